"""gpam.nn"""
