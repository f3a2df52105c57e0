def f():
 match v:
  case x: pass
 global x
