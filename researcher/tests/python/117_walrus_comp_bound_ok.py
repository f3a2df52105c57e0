def f():
 [(x := 1) for i in y]
 def g():
  nonlocal x
