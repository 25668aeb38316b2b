"""gpam.models"""
