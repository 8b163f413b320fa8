/* qdrop/interrupt.h: graceful SIGINT/SIGTERM for a calibration run.
 *
 * qd_interrupt_install() replaces the SIGINT and SIGTERM actions with a handler that only
 * records the signal (a volatile sig_atomic_t: nothing else is async-signal-safe to do there).
 * The training loop polls qd_interrupted() between iterations and the run between phases, stops
 * with QD_ERR_INTERRUPTED, keeps the last checkpoint, and the CLI exits 128 + signal number
 * (130 for SIGINT, 143 for SIGTERM). A second signal while the first is being handled takes the
 * default action at once (terminate), for a user who does not want to wait.
 * qd_interrupt_restore() puts the previous actions back (and forgets a recorded signal only
 * through qd_interrupt_reset()).
 */
#ifndef QDROP_INTERRUPT_H
#define QDROP_INTERRUPT_H

#ifdef __cplusplus
extern "C" {
#endif

/* Install the handlers (idempotent). Returns 0, or -1 when sigaction failed (then signals keep
 * their previous actions). */
int qd_interrupt_install(void);
/* Restore the actions that were in place before qd_interrupt_install. */
void qd_interrupt_restore(void);
/* The signal number received since install (SIGINT, SIGTERM), or 0. */
int qd_interrupted(void);
/* Forget a received signal (tests). */
void qd_interrupt_reset(void);
/* "SIGINT", "SIGTERM", or "signal N". */
const char *qd_signal_name(int signo);

#ifdef __cplusplus
}
#endif
#endif
