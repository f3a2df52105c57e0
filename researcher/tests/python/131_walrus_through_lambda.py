[lambda: [(x := 1) for y in z] for x in w]
[[(x := 1) for y in z] for x in w]
