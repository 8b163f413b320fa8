/* src/core/interrupt.c: SIGINT/SIGTERM recorded by an async-signal-safe flag (qdrop/interrupt.h). */
#include "qdrop/interrupt.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t g_signal;   /* first SIGINT/SIGTERM received, 0 when none */
static struct sigaction g_old_int, g_old_term;
static int g_installed;

static void on_signal(int signo) {
    if (g_signal) {
        /* second signal: the user does not want to wait for the unit to stop. signal() and
         * raise() are async-signal-safe; the raised signal is delivered when this returns. */
        signal(signo, SIG_DFL);
        raise(signo);
        return;
    }
    g_signal = signo;
}

int qd_interrupt_install(void) {
    if (g_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* both signals blocked while the handler runs, so two signals at once count as one */
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    /* SA_RESTART: reads and writes in progress continue instead of failing with EINTR (the run
     * stops at the next poll, not in the middle of writing a checkpoint) */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, &g_old_int) != 0) return -1;
    if (sigaction(SIGTERM, &sa, &g_old_term) != 0) {
        sigaction(SIGINT, &g_old_int, NULL);
        return -1;
    }
    g_installed = 1;
    return 0;
}

void qd_interrupt_restore(void) {
    if (!g_installed) return;
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    g_installed = 0;
}

int qd_interrupted(void) { return (int)g_signal; }

void qd_interrupt_reset(void) { g_signal = 0; }

const char *qd_signal_name(int signo) {
    static char buf[32];
    switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: snprintf(buf, sizeof buf, "signal %d", signo); return buf;
    }
}
