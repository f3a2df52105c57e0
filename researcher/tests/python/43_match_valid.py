match v:
    case [1, x] | [x, 2]:
        pass
    case {'k': y, **rest}:
        pass
    case Point(x=0, y=z):
        pass
    case _:
        pass
