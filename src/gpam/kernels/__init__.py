"""gpam.kernels"""
