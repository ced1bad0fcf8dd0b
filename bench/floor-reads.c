/*
 * bench/floor-reads.ts in C: for every PCI function, the six things `vfioctl list` reads for each
 * of thousands of VFs (modalias, the config header, driver_override, reset_method, numa_node, the
 * iommu_group link), each attribute with open, one read and close, as bench/floor-reads.ts and
 * src/host/root.ts do, and nothing else. Beside the Node script it separates about what those
 * system calls cost in the kernel (this) from what Node does around them (the difference, less
 * Node's start-up). The links are resolved as sysfs makes them, `../` steps and then a path.
 *
 * Usage: floor-reads-c ROOT   (prints the number of functions read)
 * Built by bench/run.ts with the system's cc; never shipped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char buf[16384];

/* An attribute's first `max` bytes; -1 when it cannot be opened or read. */
static ssize_t attr(const char *dir, const char *name, size_t max) {
  char p[PATH_MAX];
  if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) return -1;
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, max);
  close(fd);
  return n;
}

/* `base/target` for a sysfs link target of the form ../../devices/...; 0 when it is not one. */
static int join(char *out, size_t size, const char *base, const char *target) {
  char b[PATH_MAX];
  if (snprintf(b, sizeof b, "%s", base) >= (int)sizeof b) return 0;
  while (strncmp(target, "../", 3) == 0) {
    char *slash = strrchr(b, '/');
    if (slash == NULL || slash == b) return 0;
    *slash = '\0';
    target += 3;
  }
  return snprintf(out, size, "%s/%s", b, target) < (int)size;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fputs("usage: floor-reads-c ROOT\n", stderr);
    return 2;
  }
  char bus[PATH_MAX];
  if (snprintf(bus, sizeof bus, "%s/sys/bus/pci/devices", argv[1]) >= (int)sizeof bus) return 2;
  DIR *d = opendir(bus);
  if (d == NULL) {
    perror(bus);
    return 1;
  }
  long read_ = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char link[PATH_MAX], target[PATH_MAX], dir[PATH_MAX];
    if (snprintf(link, sizeof link, "%s/%s", bus, e->d_name) >= (int)sizeof link) continue;
    ssize_t t = readlink(link, target, sizeof target - 1);
    if (t < 0) continue;
    target[t] = '\0';
    if (!join(dir, sizeof dir, bus, target)) continue;
    if (attr(dir, "modalias", sizeof buf) < 0) continue;
    attr(dir, "config", 15);
    attr(dir, "driver_override", sizeof buf);
    attr(dir, "reset_method", sizeof buf);
    attr(dir, "numa_node", sizeof buf);
    char group[PATH_MAX];
    if (snprintf(link, sizeof link, "%s/iommu_group", dir) < (int)sizeof link)
      (void)readlink(link, group, sizeof group);
    read_++;
  }
  closedir(d);
  printf("%ld\n", read_);
  return 0;
}
