def f():
 nonlocal y
 global z
 nonlocal z
