def f():
    del __debug__
