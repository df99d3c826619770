# Python's Manager example (the docs' shared dict and list), on shmstate: only the import
# changed. There is no server process: `manager.dict()` is a `shmstate.Dict` and
# `manager.list()` a `shmstate.List`, in shared memory, passed to the child by reference.
from multiprocessing import Process
from shmstate import Manager

def f(d, l):
    d[1] = '1'
    d['2'] = 2
    d[0.25] = None
    l.reverse()

if __name__ == '__main__':
    with Manager() as manager:
        d = manager.dict()
        l = manager.list(range(10))

        p = Process(target=f, args=(d, l))
        p.start()
        p.join()

        print(d)
        print(l)
