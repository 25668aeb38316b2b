"""gpam.bench"""
