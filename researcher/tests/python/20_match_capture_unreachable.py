match v:
    case x:
        pass
    case 1:
        pass
