[0 for (a[[k for k in y]], b) in x if (b := 1)]
