/* The verifying vCPUs of the hostile guest run memstress itself, unchanged: its mmv_main
 * becomes memstress_main here, which hostile.c calls on every vCPU but HOSTILE_VCPU. */
#define mmv_main memstress_main
#include "memstress/memstress.c"
