# Python's Manager example (the docs' shared dict and list), on shmstate: no server
# process, no proxies. What changed: the import; `manager.dict()` is `Dict()`; shmstate has
# no shared list, so the list of ten numbers is an `Array` (fixed length, which is all this
# program needs), reversed in place under its lock. It prints what the Manager program
# prints: a Dict keeps insertion order, as a dict does.
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
