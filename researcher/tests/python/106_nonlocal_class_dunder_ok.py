class C:
 def f(self):
  nonlocal __class__
