/*
 * The host ABI of dextlink's DriverKit runtime: what a host process (the
 * simulator, in Rust: dextlink_sim::driverkit) calls to run a dext's compiled
 * C++. Every function is safe to call with NULL objects (it fails with
 * kIOReturnBadArgument); objects handed out are retained for the host, which
 * releases each with dextlink_host_release.
 *
 * Threads: calls may come from any thread. Start, Stop, NewUserClient,
 * CopyClientMemoryForType and ExternalMethod run on the object's default
 * queue (ExternalMethod on the queue set under
 * kIOUserClientQueueNameExternalMethod if there is one), and the call waits
 * for them, as DriverKit runs them (driverkit-facts §2.2-11). Callbacks (log
 * sink, completion sink) run on whichever thread the dext logs or completes on.
 */
#ifndef DEXTLINK_HOST_H
#define DEXTLINK_HOST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An OSObject (a dictionary, a service, a user client). */
typedef struct dextlink_host_object dextlink_host_object;

/* One log line without its newline; `type` is an os_log_type_t. */
typedef void (*dextlink_host_log_sink)(void* context, uint8_t type, const char* message);
/* An AsyncCompletion of the async call made with `reference`. */
typedef void (*dextlink_host_completion_sink)(void* context, uint64_t reference, int32_t status,
                                              const uint64_t* values, uint32_t count);

/* NULL restores stderr. */
void dextlink_host_set_log_sink(dextlink_host_log_sink sink, void* context);
/* NULL drops completions. */
void dextlink_host_set_completion_sink(dextlink_host_completion_sink sink, void* context);

/* Property dictionaries (a personality, and the dictionaries inside it). */
dextlink_host_object* dextlink_host_dictionary_create(void);
int32_t dextlink_host_dictionary_set_string(dextlink_host_object* dictionary, const char* key, const char* value);
int32_t dextlink_host_dictionary_set_number(dextlink_host_object* dictionary, const char* key, uint64_t value);
int32_t dextlink_host_dictionary_set_bool(dextlink_host_object* dictionary, const char* key, int value);
int32_t dextlink_host_dictionary_set_object(dextlink_host_object* dictionary, const char* key,
                                            dextlink_host_object* value);
/* Values for arrays (and dictionaries, through set_object): retained for the host. */
dextlink_host_object* dextlink_host_array_create(void);
int32_t dextlink_host_array_append(dextlink_host_object* array, dextlink_host_object* value);
dextlink_host_object* dextlink_host_string_create(const char* value);
dextlink_host_object* dextlink_host_number_create(uint64_t value);
dextlink_host_object* dextlink_host_bool_create(int value);
dextlink_host_object* dextlink_host_data_create(const void* bytes, size_t length);

/* Whether a class of that name is registered (the runtime's or a loaded dext's). */
int dextlink_host_class_exists(const char* class_name);
/* The object's class name (static storage of the class), or "" for NULL. */
const char* dextlink_host_class_name(const dextlink_host_object* object);
/* Whether `object` is an instance of `class_name` or of a subclass. */
int dextlink_host_is_kind_of(const dextlink_host_object* object, const char* class_name);

/*
 * Makes the service a personality names: an instance of its "IOUserClass",
 * with the personality as its properties, on a provider stub (a plain
 * IOService), then init and Start. kIOReturnNotFound for an unknown class,
 * kIOReturnBadArgument for a class that is not an IOService or a
 * personality without IOUserClass, kIOReturnNoMemory when init fails, or
 * Start's own error (the service is then released).
 */
int32_t dextlink_host_service_start(dextlink_host_object* personality, dextlink_host_object** service);
/* Whether the service called RegisterService (driverkit-facts §9-3). */
int dextlink_host_service_is_registered(const dextlink_host_object* service);
/* The provider the service was started on (not retained), or NULL. */
dextlink_host_object* dextlink_host_provider(const dextlink_host_object* service);
/*
 * The service's NewUserClient(type); the user client is then Start()ed by
 * Create; a result that is not an IOUserClient is refused with
 * kIOReturnUnsupported (driverkit-facts §9-2).
 */
int32_t dextlink_host_new_user_client(dextlink_host_object* service, uint32_t type, dextlink_host_object** client);
/* Stop(provider) on a started service or user client (Terminate, done synchronously). */
int32_t dextlink_host_stop(dextlink_host_object* service);
void dextlink_host_release(dextlink_host_object* object);

/* One external method call, shaped as the kernel shapes it (driverkit-facts §3.2). */
typedef struct dextlink_host_call {
    uint64_t selector;
    const uint64_t* scalar_input;
    uint32_t scalar_input_count;        /* at most 16 */
    const void* structure_input;
    uint64_t structure_input_length;    /* 1..=4096: an OSData; above: a descriptor */
    uint64_t* scalar_output;            /* 16 slots, zeroed before the call */
    uint32_t scalar_output_count;       /* in: requested; out: what the dext left (never more) */
    void* structure_output;             /* the caller's buffer */
    uint64_t structure_output_buffer_length; /* its size: at least the capacity, unless variable */
    uint64_t structure_output_capacity; /* in: 0..=4096 inline, above: a descriptor, 0xffffffff variable */
    uint64_t structure_output_length;   /* out: bytes returned (for a variable output longer than the
                                           buffer: the length needed, with kIOReturnNoSpace) */
    int is_async;                       /* give the dext a completion action */
    uint64_t async_reference;           /* what the completion sink receives */
    int structure_output_set;           /* out: the dext returned an OSData (inline or variable
                                           output), so that a host can tell "none" from "empty" */
} dextlink_host_call;

int32_t dextlink_host_external_method(dextlink_host_object* client, dextlink_host_call* call);

/* What CopyClientMemoryForType returned, as a host maps it (driverkit-facts §5). */
typedef struct dextlink_host_memory {
    int fd;             /* a memfd, owned by the runtime: dup it to keep it */
    uint64_t offset;    /* of the descriptor's bytes in the memfd */
    uint64_t length;
    int read_only;      /* kIOUserClientMemoryReadOnly was set in the options */
} dextlink_host_memory;

int32_t dextlink_host_copy_client_memory(dextlink_host_object* client, uint64_t type, dextlink_host_memory* memory);

/*
 * The leak report: one line per class with live objects, then the IOMalloc
 * blocks not freed; empty when nothing leaked. Writes at most `size` bytes
 * (NUL-terminated when size > 0) and returns the full length.
 */
size_t dextlink_host_leak_report(char* buffer, size_t size);

#ifdef __cplusplus
}
#endif

#endif
