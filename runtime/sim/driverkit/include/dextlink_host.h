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
 * for them, as DriverKit runs them (docs/driverkit.md §2.2-11). Callbacks (log
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
/* Whether the service called RegisterService (docs/driverkit.md §9-3). */
int dextlink_host_service_is_registered(const dextlink_host_object* service);
/* The provider the service was started on (not retained), or NULL. */
dextlink_host_object* dextlink_host_provider(const dextlink_host_object* service);
/*
 * The service's NewUserClient(type); the user client is then Start()ed by
 * Create; a result that is not an IOUserClient is refused with
 * kIOReturnUnsupported (docs/driverkit.md §9-2).
 */
int32_t dextlink_host_new_user_client(dextlink_host_object* service, uint32_t type, dextlink_host_object** client);
/* Stop(provider) on a started service or user client (Terminate, done synchronously). */
int32_t dextlink_host_stop(dextlink_host_object* service);
void dextlink_host_release(dextlink_host_object* object);

/* One external method call, shaped as the kernel shapes it (docs/driverkit.md §3.2). */
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

/* What CopyClientMemoryForType returned, as a host maps it (docs/driverkit.md §5). */
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

/*
 * USB: a simulated device as a USB dext's provider (docs/driverkit.md §6).
 *
 * The host models the device; the runtime calls it through this table. All
 * callbacks may run on any thread (a dext's queue, mostly) and must not call
 * back into the runtime for the same interface, except
 * dextlink_host_usb_complete, which may be called from anywhere, even
 * before bulk_out returns.
 */
typedef struct dextlink_host_usb_device_ops {
    /*
     * A control transfer on endpoint 0. bit 7 of bm_request_type set: the
     * device writes up to w_length bytes into `data`; clear: it reads
     * w_length bytes from `data`. Sets *actual to the bytes moved. Returns
     * an IOReturn (a STALL: kUSBHostReturnPipeStalled, 0xe0005000).
     */
    int32_t (*control)(void* context, uint8_t bm_request_type, uint8_t b_request, uint16_t w_value,
                       uint16_t w_index, uint16_t w_length, void* data, uint16_t* actual);
    /*
     * Queues a bulk OUT transfer of `length` bytes from `offset` in the
     * memfd `fd` (borrowed: dup it to keep it) on the endpoint `address`.
     * kIOReturnSuccess means dextlink_host_usb_complete(cookie, …) will be
     * called exactly once; an error means it never will be.
     */
    int32_t (*bulk_out)(void* context, uint8_t address, int fd, uint64_t offset, uint32_t length,
                        uint32_t timeout_ms, uint64_t cookie);
    /* Completes every pending transfer of the endpoint with `with_error`. */
    int32_t (*abort)(void* context, uint8_t address, int32_t with_error);
    /*
     * Completes every pending transfer of the endpoint with kIOReturnAborted,
     * then clears its halt; `with_request`: the host also sends the device
     * CLEAR_FEATURE(ENDPOINT_HALT).
     */
    int32_t (*clear_stall)(void* context, uint8_t address, int with_request);
    /* The runtime is done with `context` (the device object was freed). */
    void (*release)(void* context);
} dextlink_host_usb_device_ops;

/*
 * Makes an IOUSBHostInterface (and its IOUSBHostDevice) for the interface
 * `interface_number` of a device with these descriptors: the 18-byte device
 * descriptor and the whole configuration descriptor (wTotalLength bytes,
 * interfaces and endpoints included). The descriptors are copied; `ops` is
 * copied and `context` is handed to it until ops->release. Errors
 * (kIOReturnBadArgument): a NULL or short descriptor, a wrong
 * bDescriptorType, a wTotalLength other than `configuration_length`, no
 * interface of that number, an endpoint descriptor outside an interface.
 * On an error ops->release is not called.
 */
int32_t dextlink_host_usb_interface_create(const dextlink_host_usb_device_ops* ops, void* context,
                                           const uint8_t* device_descriptor, size_t device_descriptor_length,
                                           const uint8_t* configuration, size_t configuration_length,
                                           uint8_t interface_number, dextlink_host_object** interface);
/*
 * The completion of the bulk_out transfer `cookie`: queues the dext's
 * CompleteAsyncIO action (status, actual, timestamp) on its target's queue,
 * or wakes a synchronous IO. timestamp 0 means now (mach_absolute_time). A
 * cookie that is unknown or already completed is ignored, so a late
 * completion cannot reach freed memory.
 */
void dextlink_host_usb_complete(uint64_t cookie, int32_t status, uint32_t actual, uint64_t timestamp);
/*
 * The device of the bulk_out transfer `cookie` went away by itself (the
 * host's model unplugged it; call it before that transfer's
 * dextlink_host_usb_complete): as dextlink_host_usb_terminate, the device is
 * marked gone and the service holding the interface's session is stopped,
 * on a thread of the runtime's own, since the caller's thread delivers the
 * completions that Stop's Abort waits for. An unknown cookie is ignored.
 */
void dextlink_host_usb_disconnected(uint64_t cookie);
/*
 * dextlink_host_service_start on a provider made by the host (an
 * IOUSBHostInterface from dextlink_host_usb_interface_create) instead of a
 * stub: the same errors, and Start's (e.g. the dext's Open refused with
 * kIOReturnExclusiveAccess while another session is open).
 */
int32_t dextlink_host_service_start_on(dextlink_host_object* personality, dextlink_host_object* provider,
                                       dextlink_host_object** service);
/*
 * The device under `service`'s IOUSBHostInterface went away (unplugged):
 * every later call on the interface, its device and its pipes fails with
 * kIOReturnNoDevice, then the service's Stop runs on its queue and this
 * waits for it. Returns Stop's result; kIOReturnBadArgument if the
 * service's provider is not an IOUSBHostInterface.
 */
int32_t dextlink_host_usb_terminate(dextlink_host_object* service);

#ifdef __cplusplus
}
#endif

#endif
