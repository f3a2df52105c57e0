[i for i in (j := y)]
