/* ping.c - half of a cycle: tools/callgraph.py must reject this folder. */
int pong(int n);

int ping(int n)
{
    return n > 0 ? pong(n - 1) : 0;
}
