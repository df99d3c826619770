# Python's first multiprocessing program (the docs' Value/Array example), with only the
# import changed: the number and the array live in a shmstate region.
from multiprocessing import Process
from shmstate import Value, Array


def f(n, a):
    n.value = 3.1415927
    for i in range(len(a)):
        a[i] = -a[i]


if __name__ == '__main__':
    num = Value('d', 0.0)
    arr = Array('i', range(10))
    p = Process(target=f, args=(num, arr))
    p.start(); p.join()
    print(num.value); print(arr[:])
