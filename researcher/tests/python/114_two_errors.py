def f():
 nonlocal q
def g():
 x = 1
 global x
