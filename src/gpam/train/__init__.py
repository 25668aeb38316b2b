"""gpam.train"""
