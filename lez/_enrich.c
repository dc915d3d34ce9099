/* Enrichment of a chunk of vehicle records in one pass: the native core of lez.enrich.
 *
 * enrich(records, record_size, fields, correction, category_class, kind_hint, fuel_family,
 *        params, euro_index, euro_starts, euro_values,
 *        category, vclass, family, euro, derived) -> None
 *
 *   records: n packed records of record_size bytes (lez.vehicle.VEHICLE_DTYPE);
 *   fields: int64, the byte offsets of the fields read, in the order of `Field` below;
 *   correction: uint8, a registered euro id per record (0: none), or None;
 *   category_class, kind_hint, fuel_family: uint8 lookup tables by category, kind and fuel id;
 *   params: int64, the thresholds, code ids and class numbers, in the order of `Param` below
 *     (lez.enrich builds it from its data files and enums: nothing is restated here);
 *   euro_index, euro_starts, euro_values: for each vehicle class c, the rows
 *     euro_index[c] .. euro_index[c + 1] of (euro_starts int32, euro_values uint8): the euro id
 *     from each start day on, already combined over the classes c stands for (0 where they
 *     disagree), so a derivation is one search;
 *   category, vclass, family, euro, derived: uint8 outputs, one per record.
 *
 * lez.enrich.enrich_numpy does the same with NumPy (the fallback where this was not built, and
 * the oracle of the property test tests/lez/test_enrich_native.py). NumPy reads each field in a
 * pass of its own over the records and builds a mask per rule; here each record is read once.
 * A code id beyond its lookup table raises ValueError (a corrupt record), never reads outside.
 * The GIL is released during the loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

enum Field {
    F_CATEGORY, F_KIND, F_MAX_MASS, F_SEATS, F_RUNNING_MASS, F_EURO, F_FIRST_REGISTRATION,
    F_FUEL, N_FIELDS
};

enum Param {
    /* thresholds (lez/rules/data/enrich.toml) */
    P_M1_MAX_SEATS, P_M2_MAX_MASS, P_N1_MAX_MASS, P_N2_MAX_MASS, P_O1_MAX_MASS, P_O2_MAX_MASS,
    P_O3_MAX_MASS, P_DRIVER_KG, P_ADDED_KG, P_N1_I_MAX, P_N1_II_MAX, P_N2_LIGHT_MAX,
    /* category ids */
    P_CAT_M1, P_CAT_M2, P_CAT_M3, P_CAT_N1, P_CAT_N2, P_CAT_N3, P_CAT_O1, P_CAT_O2, P_CAT_O3,
    P_CAT_O4, P_CAT_T,
    /* kind hints */
    P_HINT_M1, P_HINT_M_BUS, P_HINT_N, P_HINT_O, P_HINT_L, P_HINT_T,
    /* vehicle classes */
    P_CLS_M1, P_CLS_M2, P_CLS_M3, P_CLS_N1_I, P_CLS_N1_II, P_CLS_N1_III, P_CLS_N2_LIGHT,
    P_CLS_N2_HEAVY, P_CLS_N3, P_CLS_T, P_CLS_L, P_CLS_O, P_CLS_M_BUS, P_CLS_N1, P_CLS_N2,
    P_CLS_N,
    /* Derived bits */
    P_DERIVED_CATEGORY, P_DERIVED_EURO, P_DERIVED_EURO_CORRECTED,
    /* unknown markers */
    P_U8_UNKNOWN, P_U32_UNKNOWN, P_DAY_UNKNOWN,
    N_PARAMS
};

static uint32_t read_u32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}


/* Category id and class from kind, maximum mass and seats (a record without a category). */
static void derive_category(const int64_t *P, int hint, uint32_t max_mass, int seats,
                            int *cat, int *cls) {
    int mass_known = max_mass != (uint32_t)P[P_U32_UNKNOWN];
    int many_seats = seats != P[P_U8_UNKNOWN] && seats > P[P_M1_MAX_SEATS];
    *cat = 0;
    *cls = 0;
    if (hint == P[P_HINT_M1] && !many_seats) {
        *cat = (int)P[P_CAT_M1];
        *cls = (int)P[P_CLS_M1];
    } else if (hint == P[P_HINT_M_BUS] || hint == P[P_HINT_M1]) { /* a bus, or M1 too many seats */
        *cls = (int)P[P_CLS_M_BUS];
        if (mass_known && max_mass <= P[P_M2_MAX_MASS]) {
            *cat = (int)P[P_CAT_M2];
            *cls = (int)P[P_CLS_M2];
        } else if (mass_known) {
            *cat = (int)P[P_CAT_M3];
            *cls = (int)P[P_CLS_M3];
        }
    } else if (hint == P[P_HINT_N]) {
        *cls = (int)P[P_CLS_N];
        if (mass_known && max_mass <= P[P_N1_MAX_MASS]) {
            *cat = (int)P[P_CAT_N1];
            *cls = (int)P[P_CLS_N1];
        } else if (mass_known && max_mass <= P[P_N2_MAX_MASS]) {
            *cat = (int)P[P_CAT_N2];
            *cls = (int)P[P_CLS_N2];
        } else if (mass_known) {
            *cat = (int)P[P_CAT_N3];
            *cls = (int)P[P_CLS_N3];
        }
    } else if (hint == P[P_HINT_O]) {
        *cls = (int)P[P_CLS_O];
        if (mass_known) {
            if (max_mass <= P[P_O1_MAX_MASS]) *cat = (int)P[P_CAT_O1];
            else if (max_mass <= P[P_O2_MAX_MASS]) *cat = (int)P[P_CAT_O2];
            else if (max_mass <= P[P_O3_MAX_MASS]) *cat = (int)P[P_CAT_O3];
            else *cat = (int)P[P_CAT_O4];
        }
    } else if (hint == P[P_HINT_L]) {
        *cls = (int)P[P_CLS_L];
    } else if (hint == P[P_HINT_T]) {
        *cat = (int)P[P_CAT_T];
        *cls = (int)P[P_CLS_T];
    }
}

/* An N1 or N2 class refined by the reference mass, where the mass in running order is known. */
static int refine(const int64_t *P, int cls, uint32_t running_mass) {
    if (running_mass == (uint32_t)P[P_U32_UNKNOWN]) return cls;
    int64_t ref = (int64_t)running_mass - P[P_DRIVER_KG] + P[P_ADDED_KG];
    if (cls == P[P_CLS_N1]) {
        if (ref <= P[P_N1_I_MAX]) return (int)P[P_CLS_N1_I];
        if (ref <= P[P_N1_II_MAX]) return (int)P[P_CLS_N1_II];
        return (int)P[P_CLS_N1_III];
    }
    return (int)(ref <= P[P_N2_LIGHT_MAX] ? P[P_CLS_N2_LIGHT] : P[P_CLS_N2_HEAVY]);
}

/* The euro id of class `cls` for a first registration on `first` (0: none). */
static int derive_euro(const int64_t *P, const int64_t *index, const int32_t *starts,
                       const uint8_t *values, int cls, int32_t first) {
    if (first == (int32_t)P[P_DAY_UNKNOWN]) return 0;
    int64_t a = index[cls], z = index[cls + 1];
    while (a < z) { /* the first row starting after `first` */
        int64_t mid = a + ((z - a) >> 1);
        if (starts[mid] <= first) a = mid + 1; else z = mid;
    }
    return a > index[cls] ? values[a - 1] : 0;
}

static PyObject *enrich(PyObject *self, PyObject *args) {
    PyObject *o_records, *o_fields, *o_correction, *o_cat_class, *o_kind_hint, *o_fuel_family,
        *o_params, *o_index, *o_starts, *o_values, *o_category, *o_vclass, *o_family, *o_euro,
        *o_derived;
    Py_ssize_t record_size;
    if (!PyArg_ParseTuple(args, "OnOOOOOOOOOOOOOO:enrich", &o_records, &record_size, &o_fields,
                          &o_correction, &o_cat_class, &o_kind_hint, &o_fuel_family, &o_params,
                          &o_index, &o_starts, &o_values, &o_category, &o_vclass, &o_family,
                          &o_euro, &o_derived)) {
        return NULL;
    }
    if (record_size < 1) {
        PyErr_SetString(PyExc_ValueError, "enrich: bad record size");
        return NULL;
    }
    Buffers b = {.held = 0};
    Py_ssize_t n, n_fields, n_corr = 0, n_cat_class, n_kind_hint, n_fuel_family, n_params,
        n_index, n_starts, n_values, n_category, n_vclass, n_family, n_euro, n_derived;
    void *p_records, *p_fields, *p_corr = NULL, *p_cat_class, *p_kind_hint, *p_fuel_family,
        *p_params, *p_index, *p_starts, *p_values, *p_category, *p_vclass, *p_family, *p_euro,
        *p_derived;
    int have_correction = o_correction != Py_None;
    if (take(&b, o_records, record_size, &n, &p_records, "records", 0) < 0 ||
        take(&b, o_fields, 8, &n_fields, &p_fields, "fields", 0) < 0 ||
        (have_correction && take(&b, o_correction, 1, &n_corr, &p_corr, "correction", 0) < 0) ||
        take(&b, o_cat_class, 1, &n_cat_class, &p_cat_class, "category_class", 0) < 0 ||
        take(&b, o_kind_hint, 1, &n_kind_hint, &p_kind_hint, "kind_hint", 0) < 0 ||
        take(&b, o_fuel_family, 1, &n_fuel_family, &p_fuel_family, "fuel_family", 0) < 0 ||
        take(&b, o_params, 8, &n_params, &p_params, "params", 0) < 0 ||
        take(&b, o_index, 8, &n_index, &p_index, "euro_index", 0) < 0 ||
        take(&b, o_starts, 4, &n_starts, &p_starts, "euro_starts", 0) < 0 ||
        take(&b, o_values, 1, &n_values, &p_values, "euro_values", 0) < 0 ||
        take(&b, o_category, 1, &n_category, &p_category, "category", 1) < 0 ||
        take(&b, o_vclass, 1, &n_vclass, &p_vclass, "vclass", 1) < 0 ||
        take(&b, o_family, 1, &n_family, &p_family, "family", 1) < 0 ||
        take(&b, o_euro, 1, &n_euro, &p_euro, "euro", 1) < 0 ||
        take(&b, o_derived, 1, &n_derived, &p_derived, "derived", 1) < 0) {
        release_all(&b);
        return NULL;
    }
    const char *problem = NULL;
    const int64_t *fields = p_fields, *P = p_params, *index = p_index;
    if (n_fields != N_FIELDS || n_params != N_PARAMS) {
        problem = "enrich: fields or params do not have the expected length";
    } else if ((have_correction && n_corr != n) || n_category != n || n_vclass != n ||
               n_family != n || n_euro != n || n_derived != n) {
        problem = "enrich: the records, the correction and the outputs differ in length";
    } else if (n_values != n_starts || n_index < 2) {
        problem = "enrich: the euro tables are inconsistent";
    } else {
        for (Py_ssize_t f = 0; f < N_FIELDS && !problem; f++) {
            Py_ssize_t width = f == F_MAX_MASS || f == F_RUNNING_MASS || f == F_FIRST_REGISTRATION
                                   ? 4 : 1;
            if (fields[f] < 0 || fields[f] + width > record_size)
                problem = "enrich: a field lies outside the record";
        }
        for (Py_ssize_t c = 0; c + 1 < n_index && !problem; c++) {
            if (index[c] < 0 || index[c] > index[c + 1] || index[c + 1] > n_starts)
                problem = "enrich: the euro tables are inconsistent";
        }
    }
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        release_all(&b);
        return NULL;
    }
    const unsigned char *records = p_records;
    const uint8_t *correction = p_corr, *cat_class = p_cat_class, *kind_hint = p_kind_hint,
                  *fuel_family = p_fuel_family, *values = p_values;
    const int32_t *starts = p_starts;
    uint8_t *out_category = p_category, *out_vclass = p_vclass, *out_family = p_family,
            *out_euro = p_euro, *out_derived = p_derived;
    Py_ssize_t classes = n_index - 1;
    int corrupt = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *r = records + i * record_size;
        int cat = r[fields[F_CATEGORY]], kind = r[fields[F_KIND]], fuel = r[fields[F_FUEL]];
        if (cat >= n_cat_class || kind >= n_kind_hint || fuel >= n_fuel_family) {
            corrupt = 1;
            break;
        }
        int cls = cat_class[cat], derived = 0;
        if (cat == 0) {
            derive_category(P, kind_hint[kind], read_u32(r + fields[F_MAX_MASS]),
                            r[fields[F_SEATS]], &cat, &cls);
            if (cls != 0) derived |= (int)P[P_DERIVED_CATEGORY];
        }
        if (cls == P[P_CLS_N1] || cls == P[P_CLS_N2])
            cls = refine(P, cls, read_u32(r + fields[F_RUNNING_MASS]));
        int euro = r[fields[F_EURO]];
        if (correction && correction[i] != 0) {
            euro = correction[i];
            derived |= (int)P[P_DERIVED_EURO_CORRECTED];
        }
        if (euro == 0) {
            if (cls >= classes) {
                corrupt = 1;
                break;
            }
            euro = derive_euro(P, index, starts, values, cls,
                               read_i32(r + fields[F_FIRST_REGISTRATION]));
            if (euro != 0) derived |= (int)P[P_DERIVED_EURO];
        }
        out_category[i] = (uint8_t)cat;
        out_vclass[i] = (uint8_t)cls;
        out_family[i] = fuel_family[fuel];
        out_euro[i] = (uint8_t)euro;
        out_derived[i] = (uint8_t)derived;
    }
    Py_END_ALLOW_THREADS
    release_all(&b);
    if (corrupt) {
        PyErr_SetString(PyExc_ValueError,
                        "enrich: a record holds a code id or class outside the tables");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"enrich", enrich, METH_VARARGS,
     "enrich(records, record_size, fields, correction, category_class, kind_hint, fuel_family, "
     "params, euro_index, euro_starts, euro_values, category, vclass, family, euro, derived): "
     "the effective category, class, fuel family, euro norm and derived bits of each record."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_enrich",
    "Enrichment of vehicle records in one pass (native core of lez.enrich).", -1, methods,
};

PyMODINIT_FUNC PyInit__enrich(void) { return PyModule_Create(&module); }
