match v:
    case 1:
        pass
return 5
