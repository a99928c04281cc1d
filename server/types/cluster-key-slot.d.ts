declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot (0..16383) of a key or channel: CRC16, honouring a `{hash tag}`. */
  function calculateSlot(key: string | Buffer): number;
  export = calculateSlot;
}
