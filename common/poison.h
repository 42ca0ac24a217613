/* Bans string functions that cannot be used safely. Include it last, after
 * every system header, in each source file. */
#ifndef HY_POISON_H
#define HY_POISON_H
#pragma GCC poison strcpy strcat sprintf vsprintf gets
#endif
