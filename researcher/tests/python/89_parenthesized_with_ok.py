x = 1 if y else 2
with (open(a) as b, open(c) as d):
    pass
