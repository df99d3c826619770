"""Helpers for the multi-process tests."""


def run_all(ctx, target, args_list, timeout=60):
    """Starts one process per args tuple, joins them all within ``timeout`` seconds and
    returns their exit codes (a process still running is killed and reported as
    ``None``)."""
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    codes = []
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
            codes.append(None)
        else:
            codes.append(p.exitcode)
    return codes
