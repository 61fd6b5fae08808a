/*
 * espcn_shim.c: the native face of vs-espcn.
 *
 * Python cannot register a VapourSynth namespace, so this tiny plugin registers `espcn` and
 * hands every `Upscale` call to Python through VapourSynth's own function mechanism:
 *
 *   1. Upscale takes the GIL (Python C API looked up with dlsym: no Python.h, no libpython link),
 *      imports `vs_espcn._entry` and calls `install()`, which calls
 *      `vs.core.espcn.RegisterHandler(func=<python callable>)` on the current core.
 *   2. RegisterHandler (same thread, synchronously) stores that VSFunction in a thread-local
 *      slot owned by the pending Upscale call, after checking it came from the same core.
 *   3. Upscale releases the GIL, calls the handler with its own argument map through
 *      `vsapi->callFunction` (VapourSynth converts nodes and takes the GIL itself), moves the
 *      returned clip (key "val") to out["clip"], or raises the returned "error" text as it is,
 *      and frees the handler.
 *
 * No state outlives a call: nothing is cached per core, so several cores, vspipe worker threads
 * and FrameEval callbacks need no locks, and nothing is freed after Python has finalised.
 * Every failure becomes a map error (a vs.Error in Python); the host never crashes.
 *
 * The frame filter: `espcn.Network(clip, width, height, func, inflight)` (internal, built by the
 * Python graph) is an fmParallel filter, so VapourSynth asks it for several frames at once. Each
 * request waits for one of `inflight` slots (a counting semaphore: at most that many frames are
 * computed at a time, which bounds memory), then calls `func(n=, f=)` through `callFunction`;
 * VapourSynth takes the GIL for the Python code, and the backend releases it while the network runs,
 * so the frames in flight overlap. `func` returns the new GRAY frame ("val") or {"error": text}.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "VapourSynth4.h"

#define PLUGIN_ID "com.vs-espcn.espcn"
#define ERR_PREFIX "espcn.Upscale: "
#define NEEDS_PACKAGE ERR_PREFIX "needs the vs_espcn Python package (pip install vs-espcn) in the Python that runs VapourSynth"
#define UPSCALE_ARGS                                                                          \
    "clip:vnode;scale:int:opt;model:data:opt;backend:data:opt;threads:int:opt;"               \
    "tilesize:int[]:opt;overlap:int:opt;kernel:data:opt;fp16:int:opt;device_id:int:opt;"      \
    "num_streams:int:opt;cuda_graph:int:opt;static_shape:int:opt;opt_level:int:opt;"          \
    "workspace:int:opt;cache_dir:data:opt;clamp:int:opt;precision:data:opt;"

/* ---- the few stable-ABI Python calls we need, resolved at run time ---------------------- */

typedef struct PyObject PyObject;
typedef int GILState;

typedef struct PyApi {
    int (*IsInitialized)(void);
    int (*IsFinalizing)(void); /* optional: Py_IsFinalizing (3.13+) or _Py_IsFinalizing */
    GILState (*GILState_Ensure)(void);
    void (*GILState_Release)(GILState);
    PyObject *(*Import_ImportModule)(const char *);
    PyObject *(*Object_GetAttrString)(PyObject *, const char *);
    PyObject *(*Object_CallObject)(PyObject *, PyObject *);
    PyObject *(*Object_Str)(PyObject *);
    const char *(*Unicode_AsUTF8AndSize)(PyObject *, ssize_t *);
    void (*Err_Fetch)(PyObject **, PyObject **, PyObject **);
    void (*Err_NormalizeException)(PyObject **, PyObject **, PyObject **);
    void (*Err_Clear)(void);
    void (*DecRef)(PyObject *);
} PyApi;

/* Resolve one symbol; returns 0 and names it in `missing` when absent. */
static int resolve(void **slot, const char *name, const char **missing) {
    *slot = dlsym(RTLD_DEFAULT, name);
    if (!*slot && !*missing)
        *missing = name;
    return *slot != NULL;
}

/* Look the Python API up in the process (cheap; redone per call so a late-loaded Python works). */
static const char *load_python(PyApi *py) {
    const char *missing = NULL;
    resolve((void **)&py->IsInitialized, "Py_IsInitialized", &missing);
    resolve((void **)&py->GILState_Ensure, "PyGILState_Ensure", &missing);
    resolve((void **)&py->GILState_Release, "PyGILState_Release", &missing);
    resolve((void **)&py->Import_ImportModule, "PyImport_ImportModule", &missing);
    resolve((void **)&py->Object_GetAttrString, "PyObject_GetAttrString", &missing);
    resolve((void **)&py->Object_CallObject, "PyObject_CallObject", &missing);
    resolve((void **)&py->Object_Str, "PyObject_Str", &missing);
    resolve((void **)&py->Unicode_AsUTF8AndSize, "PyUnicode_AsUTF8AndSize", &missing);
    resolve((void **)&py->Err_Fetch, "PyErr_Fetch", &missing);
    resolve((void **)&py->Err_NormalizeException, "PyErr_NormalizeException", &missing);
    resolve((void **)&py->Err_Clear, "PyErr_Clear", &missing);
    resolve((void **)&py->DecRef, "Py_DecRef", &missing);
    py->IsFinalizing = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
    if (!py->IsFinalizing)
        py->IsFinalizing = (int (*)(void))dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    return missing;
}

/* Copy str(obj) into buf (empty on failure); clears any error raised on the way. */
static void py_str(const PyApi *py, PyObject *obj, char *buf, size_t size) {
    buf[0] = '\0';
    if (!obj)
        return;
    PyObject *s = py->Object_Str(obj);
    const char *text = s ? py->Unicode_AsUTF8AndSize(s, NULL) : NULL;
    if (text)
        snprintf(buf, size, "%s", text);
    else
        py->Err_Clear();
    if (s)
        py->DecRef(s);
}

/* Describe the pending Python exception as "Type: message" into buf and clear it. */
static void py_error_text(const PyApi *py, char *buf, size_t size) {
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    char name[128], msg[1536];
    py->Err_Fetch(&type, &value, &tb);
    py->Err_NormalizeException(&type, &value, &tb);
    PyObject *tname = type ? py->Object_GetAttrString(type, "__name__") : NULL;
    if (!tname)
        py->Err_Clear();
    py_str(py, tname, name, sizeof name);
    py_str(py, value, msg, sizeof msg);
    if (msg[0])
        snprintf(buf, size, "%s: %s", name[0] ? name : "error", msg);
    else
        snprintf(buf, size, "%s", name[0] ? name : "unknown Python error");
    PyObject *refs[] = {tname, type, value, tb};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i])
            py->DecRef(refs[i]);
}

/* ---- the hand-over slot between Upscale and RegisterHandler ----------------------------- */

typedef struct Pending {
    VSCore *core;         /* the core Upscale was called on */
    VSFunction *handler;  /* set by RegisterHandler (owned reference) */
} Pending;

static _Thread_local Pending *tls_pending = NULL;

/* RegisterHandler(func): called by vs_espcn._entry.install() while an Upscale call waits. */
static void VS_CC register_handler(const VSMap *in, VSMap *out, void *user, VSCore *core, const VSAPI *vsapi) {
    (void)user;
    Pending *pending = tls_pending;
    if (!pending) {
        vsapi->mapSetError(out, "espcn.RegisterHandler: internal to vs_espcn; call espcn.Upscale instead");
        return;
    }
    if (pending->core != core) {
        vsapi->mapSetError(out, ERR_PREFIX "the clip belongs to a different core than the current Python "
                                "environment's vs.core; call Upscale from the script/environment that made the clip");
        return;
    }
    VSFunction *func = vsapi->mapGetFunction(in, "func", 0, NULL);
    if (pending->handler)
        vsapi->freeFunction(pending->handler);
    pending->handler = func;
}

/* Take the GIL, import vs_espcn._entry and run install(); returns 0 and fills err on failure. */
static int install_handler(Pending *pending, char *err, size_t size) {
    PyApi py;
    const char *missing = load_python(&py);
    if (missing) {
        snprintf(err, size, NEEDS_PACKAGE " (no Python runtime in this process: %s not found)", missing);
        return 0;
    }
    if (!py.IsInitialized() || (py.IsFinalizing && py.IsFinalizing())) {
        snprintf(err, size, NEEDS_PACKAGE " (the Python interpreter is not running)");
        return 0;
    }
    GILState gil = py.GILState_Ensure();
    Pending *saved = tls_pending;
    tls_pending = pending;
    int ok = 0;
    PyObject *module = py.Import_ImportModule("vs_espcn._entry");
    PyObject *install = module ? py.Object_GetAttrString(module, "install") : NULL;
    PyObject *result = install ? py.Object_CallObject(install, NULL) : NULL;
    if (result) {
        ok = 1;
    } else {
        char text[2048];
        py_error_text(&py, text, sizeof text);
        if (!module)
            snprintf(err, size, NEEDS_PACKAGE " (%s)", text);
        else if (!strncmp(text, "Error: " ERR_PREFIX, strlen("Error: " ERR_PREFIX)))
            snprintf(err, size, "%s", text + strlen("Error: "));
        else
            snprintf(err, size, ERR_PREFIX "could not start the Python handler (%s)", text);
    }
    PyObject *refs[] = {result, install, module};
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
        if (refs[i])
            py.DecRef(refs[i]);
    tls_pending = saved;
    py.GILState_Release(gil);
    return ok;
}

/* Find the clip a Python handler returned: "val" for a bare return value, else a single node. */
static VSNode *returned_node(const VSMap *map, const VSAPI *vsapi) {
    if (vsapi->mapGetType(map, "val") == ptVideoNode)
        return vsapi->mapGetNode(map, "val", 0, NULL);
    if (vsapi->mapNumKeys(map) == 1) {
        const char *key = vsapi->mapGetKey(map, 0);
        if (vsapi->mapGetType(map, key) == ptVideoNode)
            return vsapi->mapGetNode(map, key, 0, NULL);
    }
    return NULL;
}

/* Upscale(clip, ...): run the Python handler on our own argument map and return its clip. */
static void VS_CC upscale(const VSMap *in, VSMap *out, void *user, VSCore *core, const VSAPI *vsapi) {
    (void)user;
    char err[2304];
    Pending pending = {core, NULL};
    if (!install_handler(&pending, err, sizeof err)) {
        if (pending.handler)
            vsapi->freeFunction(pending.handler);
        vsapi->mapSetError(out, err);
        return;
    }
    if (!pending.handler) {
        vsapi->mapSetError(out, ERR_PREFIX "internal error: vs_espcn._entry.install() registered no handler");
        return;
    }
    VSMap *result = vsapi->createMap();
    vsapi->callFunction(pending.handler, in, result);
    vsapi->freeFunction(pending.handler);
    const char *failure = vsapi->mapGetError(result);
    if (!failure && vsapi->mapGetType(result, "error") == ptData)
        failure = vsapi->mapGetData(result, "error", 0, NULL);
    if (failure) {
        if (!strncmp(failure, ERR_PREFIX, strlen(ERR_PREFIX)))
            vsapi->mapSetError(out, failure);
        else {
            snprintf(err, sizeof err, ERR_PREFIX "%s", failure);
            vsapi->mapSetError(out, err);
        }
    } else {
        VSNode *node = returned_node(result, vsapi);
        if (node)
            vsapi->mapConsumeNode(out, "clip", node, maReplace);
        else
            vsapi->mapSetError(out, ERR_PREFIX "internal error: the Python handler returned no clip");
    }
    vsapi->freeMap(result);
}

/* ---- espcn.Network: the parallel per-frame filter -------------------------------------- */

typedef struct Slots {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int free; /* slots not in use */
} Slots;

typedef struct NetData {
    VSNode *node;       /* the source clip */
    VSVideoInfo vi;     /* the output: GRAY of the source's sample type, width x height */
    VSFunction *func;   /* the Python per-frame function */
    Slots slots;
} NetData;

#define NET_PREFIX "espcn.Upscale: "
#define MAX_INFLIGHT 64

static void slot_take(Slots *s) {
    pthread_mutex_lock(&s->lock);
    while (s->free == 0)
        pthread_cond_wait(&s->freed, &s->lock);
    s->free--;
    pthread_mutex_unlock(&s->lock);
}

static void slot_give(Slots *s) {
    pthread_mutex_lock(&s->lock);
    s->free++;
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->lock);
}

/* The frame `func` returned, checked against the output clip; NULL with `err` filled otherwise. */
static const VSFrame *returned_frame(const VSMap *ret, const NetData *d, char *err, size_t size,
                                     const VSAPI *vsapi) {
    const char *failure = vsapi->mapGetError(ret);
    if (!failure && vsapi->mapGetType(ret, "error") == ptData)
        failure = vsapi->mapGetData(ret, "error", 0, NULL);
    if (failure) {
        snprintf(err, size, "%s%s", strncmp(failure, NET_PREFIX, strlen(NET_PREFIX)) ? NET_PREFIX : "", failure);
        return NULL;
    }
    if (vsapi->mapGetType(ret, "val") != ptVideoFrame) {
        snprintf(err, size, NET_PREFIX "internal error: the frame function returned no frame");
        return NULL;
    }
    const VSFrame *frame = vsapi->mapGetFrame(ret, "val", 0, NULL);
    const VSVideoFormat *fmt = vsapi->getVideoFrameFormat(frame);
    if (vsapi->getFrameWidth(frame, 0) != d->vi.width || vsapi->getFrameHeight(frame, 0) != d->vi.height ||
        fmt->colorFamily != d->vi.format.colorFamily || fmt->bitsPerSample != d->vi.format.bitsPerSample ||
        fmt->sampleType != d->vi.format.sampleType) {
        vsapi->freeFrame(frame);
        snprintf(err, size, NET_PREFIX "internal error: the frame function returned a frame of the wrong size or format");
        return NULL;
    }
    return frame;
}

static const VSFrame *VS_CC net_get_frame(int n, int reason, void *instance, void **frame_data,
                                          VSFrameContext *ctx, VSCore *core, const VSAPI *vsapi) {
    (void)frame_data;
    (void)core;
    NetData *d = (NetData *)instance;
    if (reason == arInitial) {
        vsapi->requestFrameFilter(n, d->node, ctx);
        return NULL;
    }
    if (reason != arAllFramesReady)
        return NULL;
    VSMap *args = vsapi->createMap();
    VSMap *ret = vsapi->createMap();
    vsapi->mapSetInt(args, "n", n, maReplace);
    vsapi->mapConsumeFrame(args, "f", vsapi->getFrameFilter(n, d->node, ctx), maReplace);
    slot_take(&d->slots);
    vsapi->callFunction(d->func, args, ret);
    slot_give(&d->slots);
    vsapi->freeMap(args);
    char err[2304];
    const VSFrame *frame = returned_frame(ret, d, err, sizeof err, vsapi);
    vsapi->freeMap(ret);
    if (!frame)
        vsapi->setFilterError(err, ctx);
    return frame;
}

static void VS_CC net_free(void *instance, VSCore *core, const VSAPI *vsapi) {
    (void)core;
    NetData *d = (NetData *)instance;
    vsapi->freeNode(d->node);
    vsapi->freeFunction(d->func);
    pthread_cond_destroy(&d->slots.freed);
    pthread_mutex_destroy(&d->slots.lock);
    free(d);
}

/* Network(clip, width, height, func, inflight): internal, created by vs_espcn.frames.luma_clip. */
static void VS_CC net_create(const VSMap *in, VSMap *out, void *user, VSCore *core, const VSAPI *vsapi) {
    (void)user;
    VSNode *node = vsapi->mapGetNode(in, "clip", 0, NULL);
    const VSVideoInfo *src = vsapi->getVideoInfo(node);
    int64_t width = vsapi->mapGetInt(in, "width", 0, NULL);
    int64_t height = vsapi->mapGetInt(in, "height", 0, NULL);
    int64_t inflight = vsapi->mapGetInt(in, "inflight", 0, NULL);
    char err[256] = "";
    if (src->format.colorFamily == cfUndefined || src->width == 0 || src->height == 0)
        snprintf(err, sizeof err, NET_PREFIX "internal error: Network needs a constant-format clip");
    else if (width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20))
        snprintf(err, sizeof err, NET_PREFIX "internal error: Network size %lldx%lld is invalid",
                 (long long)width, (long long)height);
    else if (inflight < 1 || inflight > MAX_INFLIGHT)
        snprintf(err, sizeof err, NET_PREFIX "internal error: inflight=%lld is outside 1..%d",
                 (long long)inflight, MAX_INFLIGHT);
    NetData *d = err[0] ? NULL : (NetData *)calloc(1, sizeof *d);
    if (!err[0] && !d)
        snprintf(err, sizeof err, NET_PREFIX "out of memory");
    if (!d || !vsapi->queryVideoFormat(&d->vi.format, cfGray, src->format.sampleType,
                                       src->format.bitsPerSample, 0, 0, core)) {
        if (!err[0])
            snprintf(err, sizeof err, NET_PREFIX "internal error: no GRAY format for the clip");
        free(d);
        vsapi->freeNode(node);
        vsapi->mapSetError(out, err);
        return;
    }
    d->node = node;
    d->vi.fpsNum = src->fpsNum;
    d->vi.fpsDen = src->fpsDen;
    d->vi.numFrames = src->numFrames;
    d->vi.width = (int)width;
    d->vi.height = (int)height;
    d->func = vsapi->mapGetFunction(in, "func", 0, NULL);
    d->slots.free = (int)inflight;
    pthread_mutex_init(&d->slots.lock, NULL);
    pthread_cond_init(&d->slots.freed, NULL);
    VSFilterDependency deps[] = {{node, rpStrictSpatial}};
    vsapi->createVideoFilter(out, "Network", &d->vi, net_get_frame, net_free, fmParallel, deps, 1, d, core);
}

VS_EXTERNAL_API(void) VapourSynthPluginInit2(VSPlugin *plugin, const VSPLUGINAPI *vspapi) {
    vspapi->configPlugin(PLUGIN_ID, "espcn", "ESPCN super-resolution (ONNX; vs_espcn Python package)",
                         VS_MAKE_VERSION(1, 0), VAPOURSYNTH_API_VERSION, 0, plugin);
    vspapi->registerFunction("Upscale", UPSCALE_ARGS, "clip:vnode;", upscale, NULL, plugin);
    vspapi->registerFunction("RegisterHandler", "func:func;", "", register_handler, NULL, plugin);
    vspapi->registerFunction("Network", "clip:vnode;width:int;height:int;func:func;inflight:int;", "clip:vnode;",
                             net_create, NULL, plugin);
}
