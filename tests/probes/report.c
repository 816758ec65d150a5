/*
 * Reports the attributes the kernel keeps for the process that runs it, one "key value" line
 * each, for the tests of the runtime-spec's process and linux fields (tests/spec_process.rs):
 *
 *   rlimit_nofile SOFT HARD        getrlimit(RLIMIT_NOFILE)
 *   rlimit_nproc SOFT HARD         getrlimit(RLIMIT_NPROC)
 *   sched_policy N                 sched_getscheduler (SCHED_RESET_ON_FORK masked out)
 *   sched_reset_on_fork 0|1
 *   sched_priority N               sched_getparam
 *   nice N                         getpriority(PRIO_PROCESS, 0)
 *   ioprio_class N                 ioprio_get(IOPRIO_WHO_PROCESS, 0) >> 13
 *   ioprio_data N                  ... & 0x1fff
 *   affinity LIST                  sched_getaffinity, e.g. "0,1"
 *   personality 0xHEX              personality(0xffffffff)
 *   mempolicy_mode N               get_mempolicy (mode with its flags)
 *   monotonic_secs N               clock_gettime(CLOCK_MONOTONIC)
 *   boottime_secs N                clock_gettime(CLOCK_BOOTTIME)
 *   timens_offsets ...             /proc/self/timens_offsets, its lines joined by ';'
 *
 * Built statically by tests/build.rs, for busybox root filesystems.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

static void rlimit(const char *name, int resource)
{
	struct rlimit rl;
	if (getrlimit(resource, &rl) != 0) {
		printf("%s error %d\n", name, errno);
		return;
	}
	printf("%s %llu %llu\n", name, (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

int main(void)
{
	rlimit("rlimit_nofile", RLIMIT_NOFILE);
	rlimit("rlimit_nproc", RLIMIT_NPROC);

	int policy = sched_getscheduler(0);
	printf("sched_policy %d\n", policy < 0 ? -errno : policy & ~SCHED_RESET_ON_FORK);
	printf("sched_reset_on_fork %d\n", policy >= 0 && (policy & SCHED_RESET_ON_FORK) ? 1 : 0);
	struct sched_param param;
	printf("sched_priority %d\n", sched_getparam(0, &param) == 0 ? param.sched_priority : -errno);
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	printf("nice %d\n", errno ? -1000 : nice);

	long ioprio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
	printf("ioprio_class %ld\n", ioprio < 0 ? -errno : ioprio >> 13);
	printf("ioprio_data %ld\n", ioprio < 0 ? -errno : ioprio & 0x1fff);

	cpu_set_t set;
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		printf("affinity ");
		const char *sep = "";
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (CPU_ISSET(cpu, &set)) {
				printf("%s%d", sep, cpu);
				sep = ",";
			}
		}
		printf("\n");
	} else {
		printf("affinity error %d\n", errno);
	}

	printf("personality 0x%x\n", (unsigned)personality(0xffffffff));

	int mode = -1;
	if (syscall(SYS_get_mempolicy, &mode, NULL, 0, NULL, 0) == 0)
		printf("mempolicy_mode %d\n", mode);
	else
		printf("mempolicy_mode error %d\n", errno);

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	printf("monotonic_secs %lld\n", (long long)ts.tv_sec);
	clock_gettime(CLOCK_BOOTTIME, &ts);
	printf("boottime_secs %lld\n", (long long)ts.tv_sec);

	FILE *f = fopen("/proc/self/timens_offsets", "r");
	printf("timens_offsets ");
	if (f) {
		char line[128];
		const char *sep = "";
		while (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = 0;
			printf("%s%s", sep, line);
			sep = ";";
		}
		fclose(f);
		printf("\n");
	} else {
		printf("error %d\n", errno);
	}
	return 0;
}
