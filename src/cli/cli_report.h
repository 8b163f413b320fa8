/* src/cli/cli_report.h: the `report` and `compare` subcommands (src/cli/cli_report.c). */
#ifndef QD_CLI_REPORT_H
#define QD_CLI_REPORT_H

#include <stddef.h>

/* argv[0] is the subcommand name; returns the process exit code. */
int qd_cli_report(int argc, char **argv);
int qd_cli_compare(int argc, char **argv);

/* The command line as one shell-quoted string (for results.json and the report); malloc'd. */
char *qd_cli_command_line(int argc, char **argv);

#endif
