cdef dict _tagset_cache

cpdef cached_tag_set(key)
