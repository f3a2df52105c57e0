match v:
    case _:
        pass
    case 1:
        pass
