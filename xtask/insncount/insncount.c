/*
 * insncount: a QEMU TCG plugin that counts the guest instructions a program
 * executes (user-mode emulation, e.g. qemu-aarch64). Used by
 * `cargo xtask bench-vs-llama --insns` to measure instructions per generated
 * token on emulated Cortex-A72/A76 cores, where wall time means nothing.
 *
 * Build:  gcc -O2 -shared -fPIC -o libinsncount.so insncount.c
 * Run:    qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu \
 *             -plugin ./libinsncount.so -d plugin -D count.txt PROGRAM ARGS...
 *         -> count.txt holds "insns: N"
 *
 * How: when QEMU translates a block of guest code, the plugin asks it to add
 * the block's instruction count to a counter every time the block runs (an
 * inline add, no call). That is exact for a single guest thread; with
 * `-plugin ./libinsncount.so,threads=on` every block execution instead calls
 * back and adds atomically (exact with several guest threads, slower).
 *
 * The few declarations of the QEMU plugin API (version 1, as in QEMU 7.x's
 * include/qemu/qemu-plugin.h) are written out here so no QEMU headers are
 * needed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);

extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                                 enum qemu_plugin_cb_flags flags, void *userdata);
extern void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                                     void *ptr, uint64_t imm);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
extern void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
extern void qemu_plugin_outs(const char *string);

/* QEMU refuses plugins that do not export the API version they were written for. */
__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed; /* guest instructions executed */
static bool threaded;     /* count with atomic adds (several guest threads) */

static void on_block_run(unsigned int vcpu, void *n_insns)
{
    (void)vcpu;
    __atomic_fetch_add(&executed, (uint64_t)(uintptr_t)n_insns, __ATOMIC_RELAXED);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    if (threaded)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block_run, QEMU_PLUGIN_CB_NO_REGS, (void *)(uintptr_t)n);
    else
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
}

static void on_exit(qemu_plugin_id_t id, void *unused)
{
    (void)id;
    (void)unused;
    char line[64];
    snprintf(line, sizeof line, "insns: %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                                              int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "threads=on") == 0)
            threaded = true;
        else {
            fprintf(stderr, "insncount: unknown argument %s (known: threads=on)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
