"""gpam.analysis"""
