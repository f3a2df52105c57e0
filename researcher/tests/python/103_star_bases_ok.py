d = {}
class A(object, *[int], **d, foo="bar"):
    pass


def f(*ts):
    class I(*ts):
        pass
    return I
