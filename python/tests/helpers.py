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


def assert_ctrl_c_interrupts(setup, wait):
    """Runs ``setup`` (one line) and then ``wait`` (a call that blocks) in a fresh
    interpreter, sends it SIGINT once it is about to block, and asserts that the wait ends
    in ``KeyboardInterrupt`` within 2 s."""
    import signal
    import subprocess
    import sys
    import time

    code = "\n".join([
        "import signal, sys, threading, time, shmstate",
        # Python installs its Ctrl-C handler only if SIGINT was not ignored when it
        # started, and a test run started in the background of a non-interactive shell
        # inherits SIGINT ignored: install it regardless.
        "signal.signal(signal.SIGINT, signal.default_int_handler)",
        setup,
        "try:",
        '    print("ready", flush=True)',
        f"    {wait}",
        "except KeyboardInterrupt:",
        '    print("interrupted", flush=True)',
        "    sys.exit(0)",
        "sys.exit(3)",
    ])
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # let it block (no handshake is possible from inside the wait)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
        assert time.monotonic() - t < 2
        assert p.stdout.read().strip() == "interrupted"
    finally:
        p.kill()
        p.wait()
