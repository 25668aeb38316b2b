"""gpam.hf"""
