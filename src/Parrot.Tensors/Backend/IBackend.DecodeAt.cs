namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// A decode step's rotary embedding and KV-cache append at positions held on the device (the launch is the same
    /// every token, so a CUDA graph can replay it): qRot = rope(q); rope(k) and v are written into rows
    /// positions[b] .. positions[b] + T − 1 of row b of the whole caches.
    /// <list type="bullet">
    /// <item>q [B, H, T, D]; k, v [B, Hkv, T, D]; any strides; qRot [B, H, T, D]; one float dtype for all five and the
    /// caches.</item>
    /// <item><paramref name="cos"/>, <paramref name="sin"/>: whole tables [rows, D] (rows ≥ the cache length, one float
    /// dtype), row p rotating position p, as <see cref="Tensor.RopeTables(int, int, int, double, Device?)"/> gives.</item>
    /// <item><paramref name="positions"/>: contiguous [B], int32 or int64, on this device: read here, never on the host.</item>
    /// <item><paramref name="kCache"/>, <paramref name="vCache"/> [B, Hkv, capacity, D], any strides.</item>
    /// </list>
    /// The numbers are <see cref="Tensor.RopeAppend"/>'s at the same rows, bit for bit. A position whose rows leave the
    /// cache writes no cache element and that row's qRot is NaN (a GPU cannot throw inside a kernel; the CPU does the
    /// same): callers check the room on the host before the step (they know how many steps they issued), and a
    /// continuous batch parks its idle slots there.
    /// </summary>
    void RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, Tensor qRot);

    /// <summary>
    /// Attention of a decode step over whole KV caches with each batch row's position on the device: query t of row b
    /// sits at position positions[b] + t and sees keys 0 .. positions[b] + t (causal; keys at and past
    /// positions[b] + T are never read).
    /// <list type="bullet">
    /// <item>q [B, H, T, D]; <paramref name="kCache"/> [B, Hkv, capacity, D], <paramref name="vCache"/> [B, Hkv,
    /// capacity, Dv]; H a multiple of Hkv; any strides; one float dtype.</item>
    /// <item><paramref name="positions"/>: contiguous [B], int32 or int64, on this device (as <see cref="RopeAppendAt"/>'s:
    /// call this after it, with the same tensor).</item>
    /// <item><paramref name="output"/> [B, H, T, Dv], any strides, q's dtype.</item>
    /// </list>
    /// The numbers are <see cref="Attention"/>'s over the first positions[b] + T keys with queryOffset positions[b] (on
    /// a GPU: with the same key splits; the kernel's splits are sized for the capacity). On a GPU: f32 or bf16, T ≤ 8,
    /// head dims ≤ 128 (the decode kernel). A row whose position is outside the cache (negative, or at or past the
    /// capacity: an idle slot of serve's batch) sees no key and gives NaN on either backend, reading none of its cache; T
    /// rows that start inside and run past the end see the whole cache (the host checks the room).
    /// </summary>
    void AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double scale, Tensor output);
}
