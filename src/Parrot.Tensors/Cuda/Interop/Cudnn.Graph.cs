namespace Parrot.Tensors.Cuda.Interop;

// The numeric values of cuDNN 9's backend (graph) API enums, taken from cuDNN 9.6.0's include/cudnn_graph.h
// (CUDNN_GRAPH_MAJOR 9, MINOR 6; cudnnBackendDescriptorType_t and cudnnBackendAttributeType_t are implicit
// sequences there, counted from 0) and cross-checked against a bindgen listing of cuDNN 9.22's headers, which
// spells every value out: the same numbers (NVIDIA only appends to these enums). The header's name is beside
// each value; the class and member names are ours.
internal static partial class Cudnn
{
    /// <summary>cudnnBackendDescriptorType_t: what cudnnBackendCreateDescriptor makes.</summary>
    internal static class Descriptor
    {
        internal const int Pointwise = 0;            // CUDNN_BACKEND_POINTWISE_DESCRIPTOR
        internal const int Engine = 2;               // CUDNN_BACKEND_ENGINE_DESCRIPTOR
        internal const int EngineCfg = 3;            // CUDNN_BACKEND_ENGINECFG_DESCRIPTOR
        internal const int EngineHeur = 4;           // CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR
        internal const int ExecutionPlan = 5;        // CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR
        internal const int OperationPointwise = 13;  // CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR
        internal const int OperationGraph = 15;      // CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR
        internal const int VariantPack = 16;         // CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR
        internal const int Tensor = 17;              // CUDNN_BACKEND_TENSOR_DESCRIPTOR
        internal const int Matmul = 18;              // CUDNN_BACKEND_MATMUL_DESCRIPTOR
        internal const int OperationMatmul = 19;     // CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR
        internal const int Reduction = 21;           // CUDNN_BACKEND_REDUCTION_DESCRIPTOR
        internal const int OperationReduction = 22;  // CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR
        internal const int OperationReshape = 31;    // CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR
    }

    /// <summary>cudnnBackendAttributeType_t: the C type of an attribute's elements.</summary>
    internal static class AttrType
    {
        internal const int Handle = 0;               // CUDNN_TYPE_HANDLE (cudnnHandle_t)
        internal const int DataType = 1;             // CUDNN_TYPE_DATA_TYPE (cudnnDataType_t, a 4-byte enum)
        internal const int Boolean = 2;              // CUDNN_TYPE_BOOLEAN (C++ bool: 1 byte)
        internal const int Int64 = 3;                // CUDNN_TYPE_INT64
        internal const int Float = 4;                // CUDNN_TYPE_FLOAT
        internal const int Double = 5;               // CUDNN_TYPE_DOUBLE
        internal const int VoidPtr = 6;              // CUDNN_TYPE_VOID_PTR
        internal const int HeurMode = 8;             // CUDNN_TYPE_HEUR_MODE (cudnnBackendHeurMode_t)
        internal const int NumericalNote = 11;       // CUDNN_TYPE_NUMERICAL_NOTE (cudnnBackendNumericalNote_t, a 4-byte enum)
        internal const int PointwiseMode = 14;       // CUDNN_TYPE_POINTWISE_MODE (cudnnPointwiseMode_t)
        internal const int BackendDescriptor = 15;   // CUDNN_TYPE_BACKEND_DESCRIPTOR
        internal const int ReductionOperator = 18;   // CUDNN_TYPE_REDUCTION_OPERATOR_TYPE (cudnnReduceTensorOp_t)
        internal const int TensorReordering = 20;    // CUDNN_TYPE_TENSOR_REORDERING_MODE (cudnnBackendTensorReordering_t)
    }

    /// <summary>cudnnBackendAttributeName_t: the attributes this code sets or reads.</summary>
    internal static class Attr
    {
        internal const int PointwiseMode = 0;                    // CUDNN_ATTR_POINTWISE_MODE
        internal const int PointwiseMathPrec = 1;                // CUDNN_ATTR_POINTWISE_MATH_PREC
        internal const int PointwiseAxis = 9;                    // CUDNN_ATTR_POINTWISE_AXIS
        internal const int EngineHeurMode = 200;                 // CUDNN_ATTR_ENGINEHEUR_MODE
        internal const int EngineHeurOperationGraph = 201;       // CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH
        internal const int EngineHeurResults = 202;              // CUDNN_ATTR_ENGINEHEUR_RESULTS
        internal const int EngineCfgEngine = 300;                // CUDNN_ATTR_ENGINECFG_ENGINE
        internal const int ExecutionPlanHandle = 400;            // CUDNN_ATTR_EXECUTION_PLAN_HANDLE
        internal const int ExecutionPlanEngineConfig = 401;      // CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG
        internal const int ExecutionPlanWorkspaceSize = 402;     // CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE
        internal const int OperationPointwisePwDescriptor = 750; // CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR
        internal const int OperationPointwiseXDesc = 751;        // CUDNN_ATTR_OPERATION_POINTWISE_XDESC
        internal const int OperationPointwiseBDesc = 752;        // CUDNN_ATTR_OPERATION_POINTWISE_BDESC
        internal const int OperationPointwiseYDesc = 753;        // CUDNN_ATTR_OPERATION_POINTWISE_YDESC
        internal const int OperationPointwiseAlpha1 = 754;       // CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1
        internal const int OperationPointwiseAlpha2 = 755;       // CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2
        internal const int OperationPointwiseTDesc = 758;        // CUDNN_ATTR_OPERATION_POINTWISE_TDESC
        internal const int OperationGraphHandle = 800;           // CUDNN_ATTR_OPERATIONGRAPH_HANDLE
        internal const int OperationGraphOps = 801;              // CUDNN_ATTR_OPERATIONGRAPH_OPS
        internal const int TensorByteAlignment = 900;            // CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT
        internal const int TensorDataType = 901;                 // CUDNN_ATTR_TENSOR_DATA_TYPE
        internal const int TensorDimensions = 902;               // CUDNN_ATTR_TENSOR_DIMENSIONS
        internal const int TensorStrides = 903;                  // CUDNN_ATTR_TENSOR_STRIDES
        internal const int TensorUniqueId = 906;                 // CUDNN_ATTR_TENSOR_UNIQUE_ID
        internal const int TensorIsVirtual = 907;                // CUDNN_ATTR_TENSOR_IS_VIRTUAL
        internal const int TensorIsByValue = 908;                // CUDNN_ATTR_TENSOR_IS_BY_VALUE
        internal const int TensorReorderingMode = 909;           // CUDNN_ATTR_TENSOR_REORDERING_MODE
        internal const int VariantPackUniqueIds = 1000;          // CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS
        internal const int VariantPackDataPointers = 1001;       // CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS
        internal const int VariantPackWorkspace = 1003;          // CUDNN_ATTR_VARIANT_PACK_WORKSPACE
        internal const int MatmulCompType = 1500;                // CUDNN_ATTR_MATMUL_COMP_TYPE
        internal const int EngineGlobalIndex = 1301;             // CUDNN_ATTR_ENGINE_GLOBAL_INDEX
        internal const int EngineNumericalNote = 1303;           // CUDNN_ATTR_ENGINE_NUMERICAL_NOTE
        internal const int OperationMatmulADesc = 1520;          // CUDNN_ATTR_OPERATION_MATMUL_ADESC
        internal const int OperationMatmulBDesc = 1521;          // CUDNN_ATTR_OPERATION_MATMUL_BDESC
        internal const int OperationMatmulCDesc = 1522;          // CUDNN_ATTR_OPERATION_MATMUL_CDESC
        internal const int OperationMatmulDesc = 1523;           // CUDNN_ATTR_OPERATION_MATMUL_DESC
        internal const int ReductionOperator = 1600;             // CUDNN_ATTR_REDUCTION_OPERATOR
        internal const int ReductionCompType = 1601;             // CUDNN_ATTR_REDUCTION_COMP_TYPE
        internal const int OperationReductionXDesc = 1610;       // CUDNN_ATTR_OPERATION_REDUCTION_XDESC
        internal const int OperationReductionYDesc = 1611;       // CUDNN_ATTR_OPERATION_REDUCTION_YDESC
        internal const int OperationReductionDesc = 1612;        // CUDNN_ATTR_OPERATION_REDUCTION_DESC
        internal const int OperationReshapeXDesc = 2200;         // CUDNN_ATTR_OPERATION_RESHAPE_XDESC
        internal const int OperationReshapeYDesc = 2201;         // CUDNN_ATTR_OPERATION_RESHAPE_YDESC
    }

    /// <summary>
    /// cudnnBackendNumericalNote_t, by value: CUDNN_NUMERICAL_NOTE_TENSOR_CORE (0), DOWN_CONVERT_INPUTS,
    /// REDUCED_PRECISION_REDUCTION, FFT, NONDETERMINISTIC (4), WINOGRAD, WINOGRAD_TILE_4x4, _6x6, _13x13,
    /// STRICT_NAN_PROP (9), in words for plan descriptions.
    /// </summary>
    internal static readonly string[] NumericalNoteNames =
        ["tensor core", "down-convert inputs", "reduced-precision reduction", "FFT", "nondeterministic", "Winograd",
         "Winograd 4x4", "Winograd 6x6", "Winograd 13x13", "strict NaN propagation"];

    /// <summary>cudnnDataType_t.</summary>
    internal static class DataType
    {
        internal const int Float = 0;     // CUDNN_DATA_FLOAT
        internal const int Double = 1;    // CUDNN_DATA_DOUBLE
        internal const int Half = 2;      // CUDNN_DATA_HALF
        internal const int Int32 = 4;     // CUDNN_DATA_INT32
        internal const int BFloat16 = 9;  // CUDNN_DATA_BFLOAT16
        internal const int Int64 = 10;    // CUDNN_DATA_INT64
        internal const int Boolean = 11;  // CUDNN_DATA_BOOLEAN
    }

    /// <summary>cudnnPointwiseMode_t (explicit values in the header).</summary>
    internal static class PointwiseMode
    {
        internal const int Add = 0;            // CUDNN_POINTWISE_ADD
        internal const int Mul = 1;            // CUDNN_POINTWISE_MUL
        internal const int Div = 6;            // CUDNN_POINTWISE_DIV
        internal const int Sub = 9;            // CUDNN_POINTWISE_SUB
        internal const int Exp = 13;           // CUDNN_POINTWISE_EXP
        internal const int Log = 15;           // CUDNN_POINTWISE_LOG
        internal const int Identity = 21;      // CUDNN_POINTWISE_IDENTITY
        internal const int CmpGe = 303;        // CUDNN_POINTWISE_CMP_GE
        internal const int GenIndex = 501;     // CUDNN_POINTWISE_GEN_INDEX
        internal const int BinarySelect = 601; // CUDNN_POINTWISE_BINARY_SELECT
    }

    /// <summary>cudnnReduceTensorOp_t (the value type of CUDNN_ATTR_REDUCTION_OPERATOR).</summary>
    internal static class ReduceOp
    {
        internal const int Add = 0; // CUDNN_REDUCE_TENSOR_ADD
        internal const int Max = 3; // CUDNN_REDUCE_TENSOR_MAX
    }

    /// <summary>cudnnBackendHeurMode_t.</summary>
    internal static class HeurMode
    {
        internal const int Instant = 0;  // CUDNN_HEUR_MODE_INSTANT
        internal const int Fallback = 2; // CUDNN_HEUR_MODE_FALLBACK
        internal const int A = 3;        // CUDNN_HEUR_MODE_A
    }

    /// <summary>cudnnBackendTensorReordering_t.</summary>
    internal static class Reordering
    {
        internal const int None = 0;    // CUDNN_TENSOR_REORDERING_NONE
        internal const int F16x16 = 2;  // CUDNN_TENSOR_REORDERING_F16x16
    }

    /// <summary>cudnnStatus_t values this code tells apart (the rest are reported by cudnnGetErrorString).</summary>
    internal static class Status
    {
        internal const int Success = 0;              // CUDNN_STATUS_SUCCESS
        internal const int NotSupported = 3000;      // CUDNN_STATUS_NOT_SUPPORTED (3000..3999: the NOT_SUPPORTED family)
    }

    /// <summary>The lowest cuDNN (cudnnGetVersion: major·10000 + minor·100 + patch) whose graph API runs the SDPA graphs built here.</summary>
    internal const long MinimumSdpaVersion = 90000;
}
