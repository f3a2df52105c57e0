x = f'{a!r:>{width}}'
