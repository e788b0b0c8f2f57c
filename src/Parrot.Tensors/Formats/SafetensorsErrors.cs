namespace Parrot.Tensors.Formats;

/// <summary>
/// The exceptions for malformed safetensors files and checkpoint indexes. They are plain
/// <see cref="InvalidDataException"/>s (the type is sealed, and callers catch bad input files by it),
/// whose message is "path: tensor 'name': problem" (or "path: problem"); the path and the tensor name are
/// also in <see cref="Exception.Data"/> under <see cref="FileKey"/> and <see cref="TensorKey"/>.
/// </summary>
internal static class SafetensorsErrors
{
    /// <summary>Key of the malformed file's path in <see cref="Exception.Data"/>.</summary>
    public const string FileKey = "File";

    /// <summary>Key of the tensor's name in <see cref="Exception.Data"/> (absent for file-wide problems).</summary>
    public const string TensorKey = "Tensor";

    /// <summary>An exception for <paramref name="problem"/> in <paramref name="path"/>, about <paramref name="tensor"/> when not null.</summary>
    public static InvalidDataException Bad(string path, string? tensor, string problem)
    {
        var e = new InvalidDataException(tensor is null ? $"{path}: {problem}" : $"{path}: tensor '{FormatText.Printable(tensor)}': {problem}");
        e.Data[FileKey] = path;
        if (tensor is not null) e.Data[TensorKey] = tensor;
        return e;
    }
}
