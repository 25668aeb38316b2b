"""gpam.functional"""
