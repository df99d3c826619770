# Python's Manager example (the docs' shared dict and list) written with shmstate's objects
# directly: `manager.dict()` is `Dict()`, and the list of ten numbers an `Array` (fixed
# length, which is all this program needs), reversed in place under its lock.
# examples/python/manager.py runs the docs' program unchanged but for its import
# (`shmstate.Manager`, whose `list()` is a shared `shmstate.List`). It prints what the
# Manager program prints: a Dict keeps insertion order, as a dict does.
from multiprocessing import Process
from shmstate import Dict, Array


def f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    with l.get_lock():
        l[:] = l[::-1]


if __name__ == '__main__':
    d = Dict()
    l = Array('i', range(10))
    p = Process(target=f, args=(d, l))
    p.start()
    p.join()
    print(d)
    print(l[:])
