namespace Parrot.Parrot.Vision.Jpeg;

/// <summary>One colour component of a JPEG frame: sampling factors, sizes in samples and 8×8 blocks, and its
/// coefficients (natural order, 64 per block, blocks row-major over whole MCUs).</summary>
internal sealed class JpegComponent
{
    public int Id, H, V, QuantTable;
    public int BlocksPerLine, BlocksPerColumn;       // blocks covering the component's own samples
    public int PaddedBlocksPerLine, PaddedBlocksPerColumn; // blocks covering whole MCUs
    public int DownsampledWidth, DownsampledHeight;
    public short[] Coefficients = [];
    public int DcPredictor;
    public int DcTable, AcTable;
}
