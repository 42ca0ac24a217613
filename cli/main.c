/* hyphactl: the Hypha CLI. Everything happens in hy_cli_main (cli.c). */
#include <signal.h>
#include <stdio.h>

#include "cli.h"
#include "poison.h"

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* a closed pipe (| head) is a write error, not a kill */
    return hy_cli_main(argc, argv, stdin, stdout, stderr);
}
