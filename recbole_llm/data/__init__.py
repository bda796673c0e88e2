from recbole_llm.data.hook import profile_tensors

__all__ = ["profile_tensors"]
