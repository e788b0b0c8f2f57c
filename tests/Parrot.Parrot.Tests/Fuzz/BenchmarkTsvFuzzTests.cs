using System.Text;
using Parrot.Parrot.Evaluation;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Fuzz;

/// <summary>
/// Seeded mutations of an MMBench-style TSV (image references, NaN options, a quoted field, a bad row): it loads, with
/// prompts that can be built, or is refused with an InvalidDataException naming the file.
/// </summary>
public class BenchmarkTsvFuzzTests
{
    [Test]
    public void BenchmarkTsv()
    {
        string image = new('Q', 80); // stands for base64 image data: over 64 characters
        string[] lines =
        [
            "index\timage\tquestion\thint\tA\tB\tC\tD\tanswer\tcategory\tl2-category",
            $"0\t{image}\tWhat colour?\tLook left.\tred\tblue\tgreen\twhite\tB\tcolor\tattribute",
            "1\t0\tIs it there?\tnan\tyes\tno\t\tnan\tA\texistence\texistence",
            $"2\t{image}\t\"Count, \"\"please\"\"\"\t\t1\t2\t3\t4\tD\tcount\tcounting",
            $"3\t{image}\tNo answer\t\tx\ty\t\t\tF\tcount\tcounting",
            "\"4\"\t\"too few\"",
        ];
        var valid = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n");
        using var folder = new FuzzFolder();
        FuzzHarness.Run(valid, 41, bytes =>
        {
            var file = BenchmarkFile.Load(folder.Write("bench_en.tsv", bytes));
            foreach (var row in file.Rows) row.Question.Prompt();
        }, folder.Path, typeof(InvalidDataException));
    }
}
