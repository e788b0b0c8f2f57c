using System.Text;

namespace Parrot.Tests.Shared;

/// <summary>
/// Seeded byte-level mutations of a valid input, for fuzz tests of the readers of outside files. The same seed gives
/// the same mutations on every machine (System.Random with a seed is deterministic across runs and platforms).
/// Each mutation is described in words, so a failing case can be read and rebuilt.
/// </summary>
internal sealed class FuzzMutator(int seed)
{
    /// <summary>Numbers a double or an integer read chokes on: overflow to ±Infinity, negative zero, underflow to 0, past long.</summary>
    public static readonly string[] ExtremeNumbers = ["1e400", "-1e400", "-0", "1e-400", "9999999999999999999"];

    /// <summary>Bytes that matter to JSON, TSV and UTF-8 decoding, inserted more often than chance would.</summary>
    private static readonly byte[] Interesting = "{}[]\":,\\\t\n\r-0e."u8.ToArray().Concat(new byte[] { 0x00, 0xC3, 0xE9, 0xFF, 0xED, 0xA0 }).ToArray();

    private readonly Random _random = new(seed);

    /// <summary>
    /// One to three mutations of <paramref name="input"/> (which is left as it is); <paramref name="description"/> says which.
    /// A third of the time only one number is replaced, so that the rest still parses and the number reaches its check.
    /// </summary>
    public byte[] Mutate(byte[] input, out string description)
    {
        var bytes = new List<byte>(input);
        if (_random.Next(3) == 0 && ReplaceNumber(bytes) is { } replaced)
        {
            description = replaced;
            return bytes.ToArray();
        }
        var steps = new List<string>();
        int count = 1 + _random.Next(3);
        for (int i = 0; i < count; i++) steps.Add(MutateOnce(bytes));
        description = string.Join("; ", steps);
        return bytes.ToArray();
    }

    private string MutateOnce(List<byte> b)
    {
        if (b.Count == 0) return Insert(b);
        return _random.Next(6) switch
        {
            0 => Flip(b),
            1 => Delete(b),
            2 => Duplicate(b),
            3 => Insert(b),
            4 => ReplaceNumber(b) ?? Flip(b),
            _ => Truncate(b),
        };
    }

    private string Flip(List<byte> b)
    {
        int i = _random.Next(b.Count);
        byte old = b[i];
        b[i] = (byte)(old ^ (1 << _random.Next(8)));
        return $"flip byte {i} 0x{old:X2}->0x{b[i]:X2}";
    }

    private (int Start, int Length) Range(List<byte> b)
    {
        int start = _random.Next(b.Count);
        int length = 1 + _random.Next(Math.Min(32, b.Count - start));
        return (start, length);
    }

    private string Delete(List<byte> b)
    {
        var (start, length) = Range(b);
        b.RemoveRange(start, length);
        return $"delete {length} at {start}";
    }

    private string Duplicate(List<byte> b)
    {
        var (start, length) = Range(b);
        var copy = b.GetRange(start, length);
        int at = _random.Next(b.Count + 1);
        b.InsertRange(at, copy);
        return $"duplicate {length} from {start} to {at}";
    }

    private string Insert(List<byte> b)
    {
        int length = 1 + _random.Next(8);
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
            bytes[i] = _random.Next(2) == 0 ? Interesting[_random.Next(Interesting.Length)] : (byte)_random.Next(256);
        int at = _random.Next(b.Count + 1);
        b.InsertRange(at, bytes);
        return $"insert {Convert.ToHexString(bytes)} at {at}";
    }

    /// <summary>A number of the input (a run of digits with its sign, fraction and exponent) becomes an extreme one; null when there is none.</summary>
    private string? ReplaceNumber(List<byte> b)
    {
        var numbers = new List<(int Start, int Length)>();
        for (int i = 0; i < b.Count;)
        {
            if (!IsDigit(b[i]) || (i > 0 && (IsDigit(b[i - 1]) || IsLetter(b[i - 1])))) { i++; continue; }
            int start = i > 0 && b[i - 1] == '-' ? i - 1 : i;
            int end = i;
            while (end < b.Count && (IsDigit(b[end]) || b[end] is (byte)'.' or (byte)'e' or (byte)'E'
                || (b[end] is (byte)'+' or (byte)'-' && b[end - 1] is (byte)'e' or (byte)'E'))) end++;
            numbers.Add((start, end - start));
            i = end;
        }
        if (numbers.Count == 0) return null;
        var (s, n) = numbers[_random.Next(numbers.Count)];
        string old = Encoding.ASCII.GetString(b.GetRange(s, n).ToArray());
        string extreme = ExtremeNumbers[_random.Next(ExtremeNumbers.Length)];
        b.RemoveRange(s, n);
        b.InsertRange(s, Encoding.ASCII.GetBytes(extreme));
        return $"number {old} at {s} -> {extreme}";
    }

    private string Truncate(List<byte> b)
    {
        int keep = _random.Next(b.Count);
        b.RemoveRange(keep, b.Count - keep);
        return $"truncate to {keep}";
    }

    private static bool IsDigit(byte c) => c is >= (byte)'0' and <= (byte)'9';

    private static bool IsLetter(byte c) => c is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or (byte)'_';
}
