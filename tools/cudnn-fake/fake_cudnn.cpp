// A recording stand-in for libcudnn.so.9's backend (graph) API, for checking ParrotNative's cuDNN SDPA code on a
// machine without cuDNN or a GPU (tools/cudnn-fake/run.sh). It checks what cuDNN's documentation states about the
// API's use -- each attribute set with its documented element type, descriptor attributes pointing at finalized
// descriptors of the right kind, no attribute set after finalize, required attributes present at finalize, unique
// tensor ids, every virtual tensor produced by exactly one operation (cudnn-frontend itself leaves the inference
// stats virtual and unread), a variant pack binding exactly the graph's
// non-virtual tensors -- and records what it was given (by-value scalars, pointers) for the test to read back.
// It computes nothing: whether the real engines accept the graphs is for a GPU run. The test may make heuristics find
// no engine (for every graph, or for the deterministic backwards only, as an older cuDNN) and set the workspace plans
// ask for. Enum values as in
// cudnn_graph.h (cuDNN 9.6.0); ours, not NVIDIA's code.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

enum { TENSOR = 17, POINTWISE = 0, OP_POINTWISE = 13, MATMUL = 18, OP_MATMUL = 19, REDUCTION = 21, OP_REDUCTION = 22,
       OP_RESHAPE = 31, GRAPH = 15, HEUR = 4, CFG = 3, PLAN = 5, PACK = 16 };
enum { T_HANDLE = 0, T_DATA_TYPE = 1, T_BOOLEAN = 2, T_INT64 = 3, T_FLOAT = 4, T_DOUBLE = 5, T_VOID_PTR = 6, T_HEUR_MODE = 8, T_NUMERICAL_NOTE = 11,
       T_POINTWISE_MODE = 14, T_DESC = 15, T_REDUCTION_OP = 18, T_REORDERING = 20 };

struct Attr { int type; int64_t count; std::vector<uint8_t> bytes; };
struct Desc { int kind; bool finalized = false; std::map<int, Attr> attrs; };

std::set<Desc*> live;
long created = 0, destroyed = 0;
std::string log_text, last_error;
int reject = 0;            // fake_cudnn_set_reject: 0 engines for every graph, 1 for none, 2 for none of the deterministic backwards
int64_t workspace = 4096;  // fake_cudnn_set_workspace: what every execution plan asks for

int fail(const std::string& why) { last_error = why; log_text += "ERROR " + why + "\n"; return 2000; }

size_t element_size(int type) {
  switch (type) {
    case T_BOOLEAN: return 1;
    case T_INT64: case T_DOUBLE: case T_VOID_PTR: case T_HANDLE: case T_DESC: return 8;
    default: return 4;  // float and the enums
  }
}

// The documented element type of each attribute this code may meet (cuDNN backend API reference).
int expected_type(int attr) {
  switch (attr) {
    case 0: return T_POINTWISE_MODE; case 1: return T_DATA_TYPE; case 9: return T_INT64;
    case 200: return T_HEUR_MODE; case 201: return T_DESC; case 202: return T_DESC;
    case 400: return T_HANDLE; case 401: return T_DESC; case 402: return T_INT64;
    case 750: case 751: case 752: case 753: case 756: case 757: case 758: return T_DESC;
    case 754: case 755: return -1;  // float or double
    case 800: return T_HANDLE; case 801: return T_DESC;
    case 900: case 902: case 903: case 906: return T_INT64; case 901: return T_DATA_TYPE;
    case 907: case 908: return T_BOOLEAN; case 909: return T_REORDERING;
    case 1000: return T_INT64; case 1001: case 1003: return T_VOID_PTR;
    case 1500: return T_DATA_TYPE; case 1520: case 1521: case 1522: case 1523: return T_DESC;
    case 1600: return T_REDUCTION_OP; case 1601: return T_DATA_TYPE; case 1610: case 1611: case 1612: return T_DESC;
    case 2200: case 2201: return T_DESC;
    default: return -2;
  }
}

// The descriptor kind a descriptor-valued attribute must point at (-1: any).
int expected_kind(int attr) {
  switch (attr) {
    case 750: return POINTWISE; case 1523: return MATMUL; case 1612: return REDUCTION; case 201: return GRAPH;
    case 401: return CFG; case 202: return CFG; case 801: return -1;
    default: return TENSOR;
  }
}

bool has(Desc* d, int a) { return d->attrs.count(a) != 0; }
Desc* desc_at(Desc* d, int a, int i = 0) { return reinterpret_cast<Desc* const*>(d->attrs[a].bytes.data())[i]; }
int64_t i64(Desc* d, int a, int i = 0) { return reinterpret_cast<const int64_t*>(d->attrs[a].bytes.data())[i]; }
int32_t i32(Desc* d, int a) { return *reinterpret_cast<const int32_t*>(d->attrs[a].bytes.data()); }

// The tensors an operation reads and writes.
void io(Desc* op, std::vector<Desc*>& in, std::vector<Desc*>& out) {
  auto add = [&](std::vector<Desc*>& v, int a) { if (has(op, a)) v.push_back(desc_at(op, a)); };
  switch (op->kind) {
    case OP_POINTWISE: add(in, 751); add(in, 752); add(in, 758); add(out, 753); break;
    case OP_MATMUL: add(in, 1520); add(in, 1521); add(out, 1522); break;
    case OP_REDUCTION: add(in, 1610); add(out, 1611); break;
    case OP_RESHAPE: add(in, 2200); add(out, 2201); break;
  }
}

int check_finalize(Desc* d) {
  auto need = [&](int a, const char* what) { return has(d, a) ? 0 : fail(std::string("finalize: missing ") + what); };
  switch (d->kind) {
    case TENSOR: {
      if (int s = need(901, "TENSOR_DATA_TYPE") + need(902, "TENSOR_DIMENSIONS") + need(903, "TENSOR_STRIDES") + need(906, "TENSOR_UNIQUE_ID") +
                  need(900, "TENSOR_BYTE_ALIGNMENT")) return s;
      if (d->attrs[902].count != d->attrs[903].count) return fail("tensor: dims and strides differ in count");
      for (int i = 0; i < d->attrs[902].count; i++) if (i64(d, 902, i) <= 0) return fail("tensor: a dimension <= 0");
      return 0;
    }
    case POINTWISE: {
      if (int s = need(0, "POINTWISE_MODE") + need(1, "POINTWISE_MATH_PREC")) return s;
      if (i32(d, 0) == 501 && !has(d, 9)) return fail("GEN_INDEX without POINTWISE_AXIS");
      return 0;
    }
    case OP_POINTWISE: {
      if (int s = need(750, "PW_DESCRIPTOR") + need(751, "XDESC") + need(753, "YDESC")) return s;
      int mode = i32(desc_at(d, 750), 0);
      bool unary = mode == 13 || mode == 15 || mode == 21 || mode == 501;
      if (!unary && !has(d, 752)) return fail("binary pointwise without BDESC");
      if (mode == 601 && !has(d, 758)) return fail("BINARY_SELECT without TDESC");
      return 0;
    }
    case MATMUL: return need(1500, "MATMUL_COMP_TYPE");
    case OP_MATMUL: return need(1520, "ADESC") + need(1521, "BDESC") + need(1522, "CDESC") + need(1523, "MATMUL_DESC");
    case REDUCTION: return need(1600, "REDUCTION_OPERATOR") + need(1601, "REDUCTION_COMP_TYPE");
    case OP_REDUCTION: return need(1610, "XDESC") + need(1611, "YDESC") + need(1612, "REDUCTION_DESC");
    case OP_RESHAPE: return need(2200, "XDESC") + need(2201, "YDESC");
    case GRAPH: {
      if (int s = need(800, "OPERATIONGRAPH_HANDLE") + need(801, "OPERATIONGRAPH_OPS")) return s;
      std::map<int64_t, Desc*> uids;
      std::map<Desc*, int> produced;
      for (int i = 0; i < d->attrs[801].count; i++) {
        std::vector<Desc*> in, out;
        io(desc_at(d, 801, i), in, out);
        for (Desc* t : out) produced[t]++;
        in.insert(in.end(), out.begin(), out.end());
        for (Desc* t : in) {
          auto hit = uids.find(i64(t, 906));
          if (hit != uids.end() && hit->second != t) return fail("two tensors share uid " + std::to_string(i64(t, 906)));
          uids[i64(t, 906)] = t;
        }
      }
      for (auto& [uid, t] : uids) {
        bool virt = has(t, 907) && t->attrs[907].bytes[0];
        if (virt && produced[t] != 1) return fail("virtual tensor uid " + std::to_string(uid) + " produced " + std::to_string(produced[t]) + " times");
        if (produced[t] > 1) return fail("tensor uid " + std::to_string(uid) + " written twice");
      }
      return 0;
    }
    case HEUR: return need(201, "ENGINEHEUR_OPERATION_GRAPH") + need(200, "ENGINEHEUR_MODE");
    case PLAN: return need(400, "EXECUTION_PLAN_HANDLE") + need(401, "EXECUTION_PLAN_ENGINE_CONFIG");
    case PACK: {
      if (int s = need(1000, "VARIANT_PACK_UNIQUE_IDS") + need(1001, "VARIANT_PACK_DATA_POINTERS") + need(1003, "VARIANT_PACK_WORKSPACE")) return s;
      return d->attrs[1000].count == d->attrs[1001].count ? 0 : fail("variant pack: ids and pointers differ in count");
    }
    default: return 0;
  }
}

std::map<Desc*, Desc*> cfg_graph;  // engine config -> the graph its heuristics ran on

// A backward graph (the only ones with reshapes) whose dS·K product writes no non-virtual float32 tensor: no dQ
// accumulator, i.e. the deterministic algorithm, which reject mode 2 plays an older cuDNN without an engine for.
bool deterministic_backward(Desc* graph) {
  bool reshapes = false, accumulator = false;
  for (int i = 0; i < graph->attrs[801].count; i++) {
    Desc* op = desc_at(graph, 801, i);
    if (op->kind == OP_RESHAPE) reshapes = true;
    if (op->kind == OP_MATMUL) {
      Desc* c = desc_at(op, 1522);
      if (!(has(c, 907) && c->attrs[907].bytes[0]) && i32(c, 901) == 0) accumulator = true;
    }
  }
  return reshapes && !accumulator;
}

bool rejects(Desc* graph) { return reject == 1 || (reject == 2 && deterministic_backward(graph)); }

}  // namespace

extern "C" {

size_t cudnnGetVersion() { const char* v = std::getenv("FAKE_CUDNN_VERSION"); return v ? std::strtoul(v, nullptr, 10) : 91300; }
int cudnnCreate(void** h) { *h = reinterpret_cast<void*>(0x1234); return 0; }
int cudnnDestroy(void*) { return 0; }
int cudnnSetStream(void*, void*) { return 0; }
const char* cudnnGetErrorString(int s) { return s == 0 ? "CUDNN_STATUS_SUCCESS" : "FAKE_CUDNN_ERROR"; }
void cudnnGetLastErrorString(char* buf, size_t n) { std::snprintf(buf, n, "%s", last_error.c_str()); last_error.clear(); }

int cudnnBackendCreateDescriptor(int kind, void** out) {
  auto* d = new Desc();
  d->kind = kind;
  live.insert(d);
  created++;
  *out = d;
  return 0;
}

int cudnnBackendDestroyDescriptor(void* p) {
  auto* d = static_cast<Desc*>(p);
  if (!live.erase(d)) return fail("destroy of an unknown descriptor");
  destroyed++;
  delete d;
  return 0;
}

int cudnnBackendSetAttribute(void* p, int attr, int type, int64_t count, const void* values) {
  auto* d = static_cast<Desc*>(p);
  if (!live.count(d)) return fail("set on an unknown descriptor");
  if (d->finalized) return fail("attribute " + std::to_string(attr) + " set after finalize");
  int want = expected_type(attr);
  if (want == -2) return fail("unexpected attribute " + std::to_string(attr));
  if (want == -1 ? (type != T_FLOAT && type != T_DOUBLE) : type != want)
    return fail("attribute " + std::to_string(attr) + " given type " + std::to_string(type) + ", documented " + std::to_string(want));
  if (count <= 0 || values == nullptr) return fail("attribute " + std::to_string(attr) + ": no elements");
  Attr a{type, count, std::vector<uint8_t>(static_cast<size_t>(count) * element_size(type))};
  std::memcpy(a.bytes.data(), values, a.bytes.size());
  if (type == T_DESC) {
    for (int64_t i = 0; i < count; i++) {
      Desc* ref = reinterpret_cast<Desc* const*>(a.bytes.data())[i];
      if (!live.count(ref)) return fail("attribute " + std::to_string(attr) + " points at an unknown descriptor");
      if (!ref->finalized && attr != 202) return fail("attribute " + std::to_string(attr) + " points at an unfinalized descriptor");
      int kind = expected_kind(attr);
      if (kind >= 0 && ref->kind != kind) return fail("attribute " + std::to_string(attr) + " points at a descriptor of kind " + std::to_string(ref->kind));
    }
  }
  if (type == T_BOOLEAN && a.bytes[0] > 1) return fail("boolean attribute " + std::to_string(attr) + " is not 0/1");
  d->attrs[attr] = std::move(a);
  return 0;
}

int cudnnBackendFinalize(void* p) {
  auto* d = static_cast<Desc*>(p);
  if (!live.count(d)) return fail("finalize of an unknown descriptor");
  if (d->finalized) return fail("finalized twice");
  if (int s = check_finalize(d)) return s;
  if (d->kind == PLAN) {
    auto hit = cfg_graph.find(desc_at(d, 401));
    if (hit == cfg_graph.end()) return fail("execution plan: engine config not from heuristics");
    if (rejects(hit->second)) return 3000;
  }
  d->finalized = true;
  return 0;
}

int cudnnBackendGetAttribute(void* p, int attr, int type, int64_t requested, int64_t* count, void* values) {
  auto* d = static_cast<Desc*>(p);
  if (!live.count(d) || !d->finalized) return fail("get on an unknown or unfinalized descriptor");
  if (d->kind == HEUR && attr == 202 && type == T_DESC) {
    int64_t n = rejects(desc_at(d, 201)) ? 0 : 2;
    if (count) *count = requested == 0 ? n : std::min(n, requested);
    for (int64_t i = 0; i < std::min(n, requested); i++) {
      Desc* c = static_cast<Desc**>(values)[i];
      if (!live.count(c) || c->kind != CFG) return fail("heuristics results need created ENGINECFG descriptors");
      c->finalized = true;
      cfg_graph[c] = desc_at(d, 201);
    }
    return 0;
  }
  if (d->kind == CFG && attr == 300 && type == T_DESC && requested >= 1) {
    Desc* e = static_cast<Desc**>(values)[0];
    if (!live.count(e) || e->kind != 2) return fail("ENGINECFG_ENGINE needs a created ENGINE descriptor");
    e->finalized = true;
    if (count) *count = 1;
    return 0;
  }
  if (d->kind == 2 && attr == 1301 && type == T_INT64 && requested >= 1) {
    *static_cast<int64_t*>(values) = 8;
    if (count) *count = 1;
    return 0;
  }
  if (d->kind == 2 && attr == 1303 && type == T_NUMERICAL_NOTE) {  // one note: CUDNN_NUMERICAL_NOTE_TENSOR_CORE
    if (count) *count = requested == 0 ? 1 : std::min<int64_t>(1, requested);
    if (requested >= 1) static_cast<int32_t*>(values)[0] = 0;
    return 0;
  }
  if (d->kind == PLAN && attr == 402 && type == T_INT64 && requested >= 1) {
    *static_cast<int64_t*>(values) = workspace;
    if (count) *count = 1;
    return 0;
  }
  return fail("unexpected get of attribute " + std::to_string(attr));
}

int cudnnBackendExecute(void*, void* plan_p, void* pack_p) {
  auto* plan = static_cast<Desc*>(plan_p);
  auto* pack = static_cast<Desc*>(pack_p);
  if (!live.count(plan) || !plan->finalized || !live.count(pack) || !pack->finalized) return fail("execute: plan or pack not finalized");
  Desc* graph = cfg_graph[desc_at(plan, 401)];
  std::map<int64_t, Desc*> bound;  // the graph's non-virtual tensors
  for (int i = 0; i < graph->attrs[801].count; i++) {
    std::vector<Desc*> in, out;
    io(desc_at(graph, 801, i), in, out);
    in.insert(in.end(), out.begin(), out.end());
    for (Desc* t : in) if (!(has(t, 907) && t->attrs[907].bytes[0])) bound[i64(t, 906)] = t;
  }
  int64_t n = pack->attrs[1000].count;
  if (n != static_cast<int64_t>(bound.size())) return fail("variant pack binds " + std::to_string(n) + " tensors, the graph has " + std::to_string(bound.size()));
  std::string line = "EXECUTE";
  for (int64_t i = 0; i < n; i++) {
    int64_t uid = i64(pack, 1000, i);
    void* ptr = reinterpret_cast<void* const*>(pack->attrs[1001].bytes.data())[i];
    auto hit = bound.find(uid);
    if (hit == bound.end()) return fail("variant pack binds uid " + std::to_string(uid) + ", not in the graph");
    if (ptr == nullptr) return fail("variant pack: null pointer for uid " + std::to_string(uid));
    Desc* t = hit->second;
    if (has(t, 908) && t->attrs[908].bytes[0]) {
      char buf[64];
      if (i32(t, 901) == 4) std::snprintf(buf, sizeof buf, " %lld=%d", static_cast<long long>(uid), *static_cast<int32_t*>(ptr));
      else std::snprintf(buf, sizeof buf, " %lld=%g", static_cast<long long>(uid), *static_cast<float*>(ptr));
      line += buf;
    } else if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) {
      return fail("uid " + std::to_string(uid) + " not 16-byte aligned");
    } else {
      line += " " + std::to_string(uid);
    }
  }
  void* ws = reinterpret_cast<void* const*>(pack->attrs[1003].bytes.data())[0];
  if (ws == nullptr && workspace > 0) return fail("execute: no workspace for a plan that asked for " + std::to_string(workspace) + " bytes");
  log_text += line + "\n";
  return 0;
}

// For the test: from now on, heuristics find two engines (0), none (1), or none for deterministic backwards (2).
void fake_cudnn_set_reject(int mode) { reject = mode; }

// For the test: the workspace bytes execution plans built from now on ask for (4096 at the start).
void fake_cudnn_set_workspace(int64_t bytes) { workspace = bytes; }

// For the test: everything logged so far, and the descriptors still alive; clears the log.
int fake_cudnn_report(char* buf, size_t n) {
  std::snprintf(buf, n, "%slive %zu created %ld destroyed %ld\n", log_text.c_str(), live.size(), created, destroyed);
  log_text.clear();
  return 0;
}

}  // extern "C"
