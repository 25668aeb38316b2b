"""gpam.data"""
