async def f():
    return [[await y for y in z] for w in v]
