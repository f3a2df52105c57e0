def f():
 def g(): return x
 global x
