"""gpam.compare"""
