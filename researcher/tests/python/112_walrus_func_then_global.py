def f():
 [(x := 1) for i in y]
 global x
